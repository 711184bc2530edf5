"""Counters kept in the state Redis, shared by every process (one hash, HINCRBY).

Workers add their counts after each task (one pipelined round trip with their other
bookkeeping). api processes count every hit, so they never write per request:
:class:`BatchedCounters` adds in memory and a background thread flushes the sums
about once a second. ``/metrics`` and ``tilecast stats`` read the hash
(``common/metrics.py``); /tmp/h2-metrics.md and the README list the names.

Per-process gauges (a worker's open sources and their bytes) cannot be summed by
HINCRBY: each process writes its current values into one field of ``tc:sourcecache``
(``{host}:{pid}`` -> JSON), and readers sum the fields written recently.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

from tilecast.common.keys import SOURCE_CACHE_GAUGES_KEY, STATS_KEY

log = logging.getLogger(__name__)


TILES_RENDERED = "tiles_rendered"
THUMBNAILS_RENDERED = "thumbnails_rendered"
RAW_TILES_READ = "raw_tiles_read"
RAW_TILES_SYNTHESIZED = "raw_tiles_synthesized"
RENDER_ERRORS = "render_errors"
# Render bounds (issue 14): renders stopped because nobody waited any more
# (workers/guard.py), stopped by their soft time limit, killed at their hard one
# (workers/limits.py), and tasks deferred behind other sources (workers/share.py).
RENDERS_ABANDONED = "renders_abandoned"
RENDERS_TOO_COSTLY = "renders_too_costly"
RENDERS_KILLED = "renders_killed"
RENDERS_DEFERRED = "renders_deferred"

# The api's view of the cache: hits and misses of each kind of answer it serves
# (api/miss/answers.py), counted as "api_{kind}_hits" and "api_{kind}_misses".
KIND_TILE = "tile"
KIND_THUMBNAIL = "thumbnail"
KIND_REGION = "region"
KIND_PIXEL = "pixel"
KIND_HISTOGRAM = "histogram"
KIND_BANDS = "bands"
KIND_ASSOCIATED = "associated"
# Chunks of the OME-Zarr view (/zarr/{id}/, common/zarrchunk.py).
KIND_ZARR_CHUNK = "zarrchunk"
API_ANSWER_KINDS = (
    KIND_TILE,
    KIND_THUMBNAIL,
    KIND_REGION,
    KIND_PIXEL,
    KIND_HISTOGRAM,
    KIND_BANDS,
    KIND_ASSOCIATED,
    KIND_ZARR_CHUNK,
)


def api_hits(kind: str) -> str:
    return f"api_{kind}_hits"


def api_misses(kind: str) -> str:
    return f"api_{kind}_misses"


API_TILE_HITS = api_hits(KIND_TILE)
API_TILE_MISSES = api_misses(KIND_TILE)
API_THUMBNAIL_HITS = api_hits(KIND_THUMBNAIL)
API_THUMBNAIL_MISSES = api_misses(KIND_THUMBNAIL)
API_NOT_MODIFIED = "api_not_modified"

# The worker source cache, summed over worker processes.
SOURCE_CACHE_HITS = "source_cache_hits"
SOURCE_CACHE_MISSES = "source_cache_misses"
SOURCE_CACHE_EVICTIONS = "source_cache_evictions"  # idle beyond the activity window
SOURCE_CACHE_EVICTIONS_ACTIVE = "source_cache_evictions_active"  # forced, within it

# The cache keeper (workers/keeper.py).
KEEPER_RUNS = "keeper_runs"
KEEPER_DELETED_KEYS = "keeper_deleted_keys"
KEEPER_DELETED_ACTIVE_KEYS = "keeper_deleted_active_keys"
KEEPER_FREED_BYTES = "keeper_freed_bytes"

# Prefetch (api/miss/prefetch.py): tasks and tiles sent; tiles the bulk pool rendered,
# and tiles it dropped (expired, or cached or claimed by a viewer's miss meanwhile).
PREFETCH_TASKS = "prefetch_tasks"
PREFETCH_TILES = "prefetch_tiles"
PREFETCH_RENDERED = "prefetch_rendered"
PREFETCH_DROPPED = "prefetch_dropped"

# A process whose gauges are older than this is gone (or idle and unchanged: it
# rewrites them at least this often while it runs tasks).
GAUGE_STALE_SECONDS = 120.0

FLUSH_SECONDS = 1.0


def incr(state: redis.Redis, name: str, amount: int = 1) -> None:
    state.hincrby(STATS_KEY, name, amount)


def incr_many(state: redis.Redis, counts: Mapping[str, int]) -> None:
    """HINCRBY every non-zero count on ``state`` (a client or a pipeline)."""
    for name, amount in counts.items():
        if amount:
            state.hincrby(STATS_KEY, name, amount)


def read(state: redis.Redis) -> dict[str, int]:
    raw = state.hgetall(STATS_KEY)
    return {k.decode(): int(v) for k, v in raw.items()}  # type: ignore[union-attr]


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def write_gauges(state: redis.Redis, values: Mapping[str, int], name: str | None = None) -> None:
    """This process's current gauges (on a client or a pipeline)."""
    body = json.dumps({**values, "t": time.time()})
    state.hset(SOURCE_CACHE_GAUGES_KEY, name or process_name(), body)


def read_gauges(state: redis.Redis, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Live processes' gauges (process name -> values); stale fields are removed."""
    now = time.time() if now is None else now
    live: dict[str, dict[str, Any]] = {}
    stale: list[bytes] = []
    for field, raw in state.hgetall(SOURCE_CACHE_GAUGES_KEY).items():  # type: ignore[union-attr]
        try:
            values = json.loads(raw)
            fresh = now - float(values.get("t", 0)) <= GAUGE_STALE_SECONDS
        except (ValueError, TypeError, AttributeError):
            fresh = False
        if fresh:
            live[field.decode()] = values
        else:
            stale.append(field)
    if stale:
        state.hdel(SOURCE_CACHE_GAUGES_KEY, *stale)
    return live


class BatchedCounters:
    """Counts added in memory and flushed to ``tc:stats`` by a daemon thread.

    ``add`` costs a dict update under a lock (no I/O), so the hit path stays one
    Redis round trip. The thread starts on first use, i.e. in the process that counts
    (after a gunicorn fork). Counts of a failed flush are kept for the next one.
    """

    def __init__(self, state: redis.Redis, period: float = FLUSH_SECONDS) -> None:
        self.state = state
        self.period = period
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._failing = False

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            pipe = self.state.pipeline(transaction=False)
            incr_many(pipe, counts)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            # Once per outage, not once a second; the counts wait for the next flush.
            (log.debug if self._failing else log.warning)(
                "could not flush %d counters: %s", len(counts), exc
            )
            self._failing = True
            with self._lock:
                self._counts.update(counts)
            return
        self._failing = False

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="tilecast-counters", daemon=True)
            self._thread.start()
            # A process that exits cleanly (gunicorn's graceful stop) keeps its last counts.
            atexit.register(self._flush_at_exit)

    def _flush_at_exit(self) -> None:
        # Redis may be gone by now (tests stop it first): lose the counts quietly.
        with contextlib.suppress(Exception), self._lock:
            counts, self._counts = self._counts, Counter()
        if counts:
            with contextlib.suppress(Exception):
                pipe = self.state.pipeline(transaction=False)
                incr_many(pipe, counts)
                pipe.execute()

    def _run(self) -> None:
        while True:
            time.sleep(self.period)
            self.flush()


# HTTP requests by route, method and status class, counted by the api processes in
# tc:stats fields "http|{method}|{status class}|{route}" (the route is the URL rule's
# template, so ids never multiply the fields).
HTTP_REQUESTS_PREFIX = "http|"
UNMATCHED_ROUTE = "unmatched"


def http_request_field(method: str, status: int, route: str | None) -> str:
    return f"{HTTP_REQUESTS_PREFIX}{method}|{status // 100}xx|{route or UNMATCHED_ROUTE}"


def parse_http_request_field(name: str) -> tuple[str, str, str] | None:
    """``(method, status class, route)`` of an HTTP request counter, else None."""
    if not name.startswith(HTTP_REQUESTS_PREFIX):
        return None
    parts = name[len(HTTP_REQUESTS_PREFIX) :].split("|", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None
