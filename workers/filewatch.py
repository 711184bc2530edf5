"""The file watcher: notices a changed file of a source people are viewing even when
every tile they ask is a cache hit (which never reaches a worker).

Every ``Settings.file_check_interval`` seconds, a thread of each worker node's main
process reads the sources viewed within the activity window (common/activity.py),
their records in one round trip, and ``stat``s each local file once; a file that is
not the registered one any more is registered again under a new generation
(workers/filechanges.py; many watchers noticing at once store one). Renders notice
on their own when they open or use a file (workers/sourcecache.py); this covers the
sources whose tiles are all cached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from tilecast.common import activity
from tilecast.common.redisconn import CacheClient, connect, connect_cache
from tilecast.common.registry import SOURCES_KEY, SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.workers.filechanges import refresh_if_changed

log = logging.getLogger(__name__)

# Never check more often than this, whatever the interval says (0 means "on every
# use" for open sources; the watcher then runs at this pace).
MIN_PERIOD = 0.5


class FileWatcher:
    def __init__(
        self,
        settings: Settings,
        state: redis.Redis,
        cache: CacheClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = SourceRegistry(state)
        self.state = state
        self.cache = cache
        self.clock = clock

    def check_once(self) -> list[str]:
        """Check the viewed sources' files; the ids of those registered again."""
        viewed = activity.viewed_since(self.cache, self.clock() - self.settings.active_window)
        if not viewed:
            return []
        refreshed = []
        for data in self.state.hmget(SOURCES_KEY, viewed):  # type: ignore[union-attr]
            if data is None:
                continue
            record = SourceRecord.from_json(data)
            try:
                outcome = refresh_if_changed(self.registry, record, self.settings)
            except Exception:  # one source's trouble must not stop the others' checks
                log.exception("checking the file of source %s failed", record.id)
                continue
            if outcome is not None:
                refreshed.append(record.id)
        return refreshed


class _Thread:
    def __init__(self, watcher: FileWatcher, period: float) -> None:
        self.watcher = watcher
        self.period = period
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tilecast-filewatch", daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.period):
            try:
                self.watcher.check_once()
            except redis.RedisError as exc:
                log.warning("file watcher: Redis is unavailable: %s", exc)
            except Exception:
                log.exception("file watcher check failed")


_running: _Thread | None = None


def start(settings: Settings) -> None:
    global _running
    if _running is not None:
        return
    cache = connect_cache(settings.cache_url)
    state = cache if settings.state_url in ("", settings.cache_url) else connect(settings.state_url)
    watcher = FileWatcher(settings, state, cache)  # type: ignore[arg-type]
    _running = _Thread(watcher, max(settings.file_check_interval, MIN_PERIOD))
    _running.thread.start()


def stop() -> None:
    global _running
    if _running is not None:
        _running.stopping.set()
        _running = None


def install() -> None:
    """Run the watcher in a worker node's main process (``worker_ready`` fires there
    after the pool has forked, so no pool process inherits the thread)."""
    from celery.signals import worker_ready, worker_shutdown

    from tilecast.common.settings import get_settings

    def on_ready(**_kwargs: Any) -> None:
        start(get_settings())

    def on_shutdown(**_kwargs: Any) -> None:
        stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
