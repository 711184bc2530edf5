"""The cache keeper: keeps every image someone viewed within the activity window.

Redis's own LRU works per key: it may evict the coarse tiles of an image viewed five
minutes ago before the tiles of an image nobody has looked at for an hour. The keeper
acts first. When the cache Redis's ``used_memory`` passes ``keeper_high_water`` of
``maxmemory`` it deletes cached answers (rendered and raw tiles, thumbnails, regions,
statistics...) source by source until memory is below ``keeper_low_water``:

1. sources not viewed within the window (or never recorded), least recently viewed
   first, every key of each;
2. only then active sources, least recently viewed first, finest level first (a viewer
   reloads coarse levels first; fine tiles are the most numerous and least shared).

It finds the keys with SCAN (never KEYS) and the key layout of ``common/tiles.py``:
``tc:{kind}:{source}:{generation}:{frame}:{z}:{x}:{y}:{style}:{encoding}``, and only
deletes the kinds below -- never state (registry, generations, markers, queues), even
when one Redis plays both roles. It runs as a thread of a worker node's main process
(Celery's ``worker_ready``), and a short lock in the state Redis lets one run per
cluster. It counts what it deletes in ``common.counters``; Redis's own ``evicted_keys``
is read by ``/metrics``.

When the cache Redis is a Redis Cluster (common/redisconn.py) every primary evicts by
its own ``maxmemory``, so the water marks apply per primary: each check reads every
primary's memory and trims each one above the high-water mark, scanning and deleting
that node's keys only, in the same order (the activity set is one key, read for all).
An image's keys spread over the nodes by hash, so trimming each node in plan order
approximates trimming the whole cache in that order.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import redis

from tilecast.common import activity
from tilecast.common.associated import KIND_ASSOCIATED, KIND_ASSOCIATED_LIST
from tilecast.common.bandstats import KIND_BANDSTATS
from tilecast.common.counters import (
    KEEPER_DELETED_ACTIVE_KEYS,
    KEEPER_DELETED_KEYS,
    KEEPER_FREED_BYTES,
    KEEPER_RUNS,
    incr_many,
)
from tilecast.common.keys import ALL_PATTERN
from tilecast.common.keys import KEEPER_LOCK_KEY as LOCK_KEY
from tilecast.common.lease import Lease
from tilecast.common.redisconn import (
    CacheClient,
    by_slot,
    connect,
    connect_cache,
    is_cluster,
    primaries,
)
from tilecast.common.regions import KIND_BANDS, KIND_HISTOGRAM, KIND_PIXEL, KIND_REGION
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.tiles import KIND_RAW, KIND_THUMB, KIND_TILE
from tilecast.common.zarrchunk import KIND_ZARR_CHUNK

log = logging.getLogger(__name__)

EVICTABLE_KINDS = frozenset(
    {
        KIND_TILE,
        KIND_RAW,
        KIND_THUMB,
        KIND_ASSOCIATED,
        KIND_ASSOCIATED_LIST,
        KIND_REGION,
        KIND_PIXEL,
        KIND_HISTOGRAM,
        KIND_BANDS,
        KIND_BANDSTATS,
        KIND_ZARR_CHUNK,
    }
)
STANDBY_CHECKS = 3
SCAN_COUNT = 1000
DELETE_CHUNK = 500
# A plan holds at most this many keys (about 100 bytes of Python each); a bigger
# cache is trimmed over several runs.
MAX_PLAN_KEYS = 2_000_000
# Sources not viewed for this long are dropped from ``tc:active`` (their tiles have
# expired by then, or are the first the keeper deletes anyway).
ACTIVITY_RETENTION = 7 * 24 * 3600.0
# The level given to keys whose z is not a number (thumbnails, regions, stats): they
# are whole-image answers, kept as long as the coarsest tiles.
WHOLE_IMAGE_LEVEL = -1


def parse_key(key: str) -> tuple[str, str, int] | None:
    """``(kind, source, level)`` of a cached answer's key, or None for anything else.

    Parsed from the right, so a source id may itself contain colons."""
    parts = key.rsplit(":", 7)
    if len(parts) != 8:
        return None
    head = parts[0].split(":", 2)
    if len(head) != 3 or head[0] != "tc" or head[1] not in EVICTABLE_KINDS or not head[2]:
        return None
    z = parts[3]
    level = int(z) if z.isdigit() else WHOLE_IMAGE_LEVEL
    return head[1], head[2], level


@dataclass
class SourceKeys:
    source: str
    last_seen: float | None  # wall-clock time, None when never recorded
    keys: list[tuple[int, bytes]] = field(default_factory=list)  # (level, key)


@dataclass
class Victim:
    key: bytes
    active: bool


def plan(sources: Iterable[SourceKeys], now: float, window: float) -> Iterator[Victim]:
    """The order to delete in: inactive sources (least recently viewed first, all
    their keys), then active ones (least recently viewed first, finest level first)."""
    ordered = sorted(sources, key=lambda s: -1.0 if s.last_seen is None else s.last_seen)
    inactive = [s for s in ordered if s.last_seen is None or s.last_seen < now - window]
    active = [s for s in ordered if not (s.last_seen is None or s.last_seen < now - window)]
    for entry in inactive:
        for _level, key in entry.keys:
            yield Victim(key, False)
    for entry in active:
        for _level, key in sorted(entry.keys, key=lambda item: -item[0]):
            yield Victim(key, True)


@dataclass
class TrimResult:
    deleted: int = 0
    deleted_active: int = 0
    freed_bytes: int = 0
    used_before: int = 0
    used_after: int = 0

    def add(self, other: TrimResult) -> TrimResult:
        """The sum of two nodes' trims."""
        return TrimResult(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(TrimResult))
        )


def memory(client: redis.Redis) -> tuple[int, int]:
    """``(used_memory, maxmemory)`` of a Redis server."""
    info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
    return int(info["used_memory"]), int(info.get("maxmemory", 0))


class Keeper:
    """One trimming decision per :meth:`check`; :class:`KeeperThread` runs it."""

    def __init__(
        self,
        cache: CacheClient,
        state: redis.Redis,
        *,
        window: float,
        high_water: float,
        low_water: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.state = state
        self.window = window
        self.high_water = high_water
        self.low_water = min(low_water, high_water)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Keeper:
        return cls(
            connect_cache(settings.cache_url, **settings.redis_timeouts),
            connect(settings.state_url, **settings.redis_timeouts),
            window=settings.active_window,
            high_water=settings.keeper_high_water,
            low_water=settings.keeper_low_water,
        )

    def check(self) -> TrimResult | None:
        """Trim every primary whose memory is above the high-water mark (one server:
        the server); None when nothing was due. On a cluster the result sums the
        nodes trimmed."""
        total: TrimResult | None = None
        for node in primaries(self.cache):
            used, limit = memory(node)
            if limit <= 0 or used <= self.high_water * limit:
                continue
            result = self.trim(int(self.low_water * limit), used, node=node)
            total = result if total is None else total.add(result)
        return total

    def trim(
        self, target: int, used: int | None = None, *, node: redis.Redis | None = None
    ) -> TrimResult:
        """Delete in :func:`plan` order until ``used_memory`` <= ``target``.

        ``node``: the primary to trim (default: the one server, or a cluster's first
        primary). Deletes in chunks sized by the bytes still to free over the average
        bytes per key (so a small cache is not emptied by one big chunk), at most
        DELETE_CHUNK keys, re-reading used_memory in the same round trip each time."""
        now = self.clock()
        if node is None:
            node = primaries(self.cache)[0]
        if used is None:
            used = memory(node)[0]
        result = TrimResult(used_before=used, used_after=used)
        current, keys = used, max(1, int(node.dbsize()))  # type: ignore[arg-type]
        victims = plan(self._collect(node), now, self.window)
        while current > target:
            average = max(1, current // max(1, keys))
            wanted = min(DELETE_CHUNK, max(1, -(-(current - target) // average)))
            batch = list(itertools.islice(victims, wanted))
            if not batch:
                break
            current, keys = self._delete(node, batch, result)
        result.used_after = current
        result.freed_bytes = max(0, result.used_before - current)
        activity.forget_before(self.cache, now - max(ACTIVITY_RETENTION, self.window))
        self._count(result)
        log.info(
            "keeper: deleted %d keys (%d of active sources), used_memory %d -> %d (target %d)",
            result.deleted,
            result.deleted_active,
            result.used_before,
            result.used_after,
            target,
        )
        return result

    def _collect(self, node: redis.Redis) -> list[SourceKeys]:
        """The cached answers held by ``node``, by source (SCAN on a cluster node visits
        that node's keys only)."""
        seen = activity.last_seen(self.cache)
        by_source: dict[str, SourceKeys] = {}
        count = 0
        for raw in node.scan_iter(match=ALL_PATTERN, count=SCAN_COUNT):
            parsed = parse_key(raw.decode(errors="replace"))
            if parsed is None:
                continue
            _kind, source, level = parsed
            entry = by_source.get(source)
            if entry is None:
                entry = by_source[source] = SourceKeys(source, seen.get(source))
            entry.keys.append((level, raw))
            count += 1
            if count >= MAX_PLAN_KEYS:
                break
        return list(by_source.values())

    def _delete(
        self, node: redis.Redis, batch: list[Victim], result: TrimResult
    ) -> tuple[int, int]:
        """UNLINK ``batch`` on ``node``, then read its used_memory and DBSIZE, in one
        round trip.

        Counts what was really there to delete (a key may have expired meanwhile). A
        cluster node refuses a multi-key UNLINK across hash slots: there it is one
        UNLINK per slot."""
        inactive = [victim.key for victim in batch if not victim.active]
        active = [victim.key for victim in batch if victim.active]
        groups = [
            (is_active, group)
            for is_active, keys in ((False, inactive), (True, active))
            if keys
            for group in (by_slot(keys) if is_cluster(self.cache) else [keys])
        ]
        pipe = node.pipeline(transaction=False)
        for _is_active, group in groups:
            pipe.unlink(*group)
        pipe.info("memory")
        pipe.dbsize()
        *removed, info, keys_left = pipe.execute()
        for (is_active, _group), count in zip(groups, removed, strict=True):
            result.deleted += int(count)
            result.deleted_active += int(count) if is_active else 0
        return int(info["used_memory"]), int(keys_left)

    def _count(self, result: TrimResult) -> None:
        counts = {
            KEEPER_RUNS: 1,
            KEEPER_DELETED_KEYS: result.deleted,
            KEEPER_DELETED_ACTIVE_KEYS: result.deleted_active,
            KEEPER_FREED_BYTES: result.freed_bytes,
        }
        pipe = self.state.pipeline(transaction=False)
        incr_many(pipe, counts)
        pipe.execute()


class KeeperThread(threading.Thread):
    """Checks every ``interval`` seconds while it holds the cluster-wide lock.

    A ``standby`` keeper (in a bulk-only node: niced, maybe starved of CPU while
    interactive work runs) takes the lock only after seeing it free on
    ``STANDBY_CHECKS`` checks in a row, so a keeper in an interactive node, which
    takes it at its first check, wins whenever one runs."""

    def __init__(self, keeper: Keeper, interval: float, *, standby: bool = False) -> None:
        super().__init__(name="tilecast-keeper", daemon=True)
        self.keeper = keeper
        self.interval = interval
        self.standby = standby
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.lock = Lease(keeper.state, LOCK_KEY, self.owner, max(3 * interval, 10.0))
        self.stopping = threading.Event()
        self._free_checks = 0

    def holds_lock(self) -> bool:
        """Renew the lock when it is ours, else take it when free (one keeper per
        cluster; a keeper that dies lets another take over within the lock's TTL)."""
        if self.lock.renew():
            return True
        if self.standby:
            if self.lock.is_held():
                self._free_checks = 0
                return False
            self._free_checks += 1
            if self._free_checks < STANDBY_CHECKS:
                return False
        return self.lock.take()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                if self.holds_lock():
                    self.keeper.check()
            except redis.exceptions.RedisError as exc:
                log.warning("keeper: %s", exc)
            except Exception:  # the keeper must outlive any one bad run
                log.exception("keeper run failed")

    def stop(self) -> None:
        self.stopping.set()
        # Hand the lock on at once; if Redis is unreachable it expires on its own.
        with contextlib.suppress(redis.exceptions.RedisError):
            self.lock.release()


_thread: KeeperThread | None = None


def start(settings: Settings, *, standby: bool = False) -> KeeperThread | None:
    """Start this process's keeper thread (None when ``keeper_interval`` is 0)."""
    global _thread
    if settings.keeper_interval <= 0:
        return None
    if _thread is None or not _thread.is_alive():
        keeper = Keeper.from_settings(settings)
        _thread = KeeperThread(keeper, settings.keeper_interval, standby=standby)
        _thread.start()
    return _thread


def stop() -> None:
    global _thread
    if _thread is not None:
        _thread.stop()
        _thread = None


def serves_interactive(queue_names: Iterable[str]) -> bool:
    """Whether a node consuming ``queue_names`` serves people (the shared interactive
    queue or a per-worker ``interactive.*`` one)."""
    return any(
        name == QUEUE_INTERACTIVE or name.startswith(QUEUE_INTERACTIVE + ".")
        for name in queue_names
    )


def install() -> None:
    """Run the keeper in a worker node's main process: ``worker_ready`` fires there
    after the pool has forked, so no pool process inherits the thread. Nodes that
    serve only bulk work keep theirs on standby."""
    from celery.signals import worker_ready, worker_shutdown

    from tilecast.common.settings import get_settings

    def on_ready(sender: Any = None, **_kwargs: Any) -> None:
        queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
        names = list(getattr(queues, "consume_from", None) or [])
        start(get_settings(), standby=bool(names) and not serves_interactive(names))

    def on_shutdown(**_kwargs: Any) -> None:
        stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
