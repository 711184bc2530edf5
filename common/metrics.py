"""One snapshot of tilecast's counters and gauges, for ``/metrics`` and ``tilecast stats``.

Counters come from the ``tc:stats`` hash (common/counters.py: every api and worker process
adds to it); gauges are read at collection time: the cache Redis's memory, key count
and its own evictions (INFO), the active sources (common/activity.py), the worker
source caches' sizes (summed over live processes), in-flight markers and queue
depths, jobs by state. HTTP requests by route (api/middleware/observe.py) are ``tc:stats`` fields of
their own; render latency histograms come from ``tc:latency`` (common/latency.py).
:func:`prometheus_text` renders the text exposition format (version 0.0.4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from tilecast.common import activity, jobstore, keys, latency
from tilecast.common.counters import (
    API_ANSWER_KINDS,
    API_NOT_MODIFIED,
    API_TILE_HITS,
    API_TILE_MISSES,
    KEEPER_DELETED_ACTIVE_KEYS,
    KEEPER_DELETED_KEYS,
    KEEPER_FREED_BYTES,
    KEEPER_RUNS,
    PREFETCH_DROPPED,
    PREFETCH_RENDERED,
    PREFETCH_TASKS,
    PREFETCH_TILES,
    RAW_TILES_READ,
    RAW_TILES_SYNTHESIZED,
    RENDER_ERRORS,
    RENDERS_ABANDONED,
    RENDERS_DEFERRED,
    RENDERS_KILLED,
    RENDERS_TOO_COSTLY,
    SOURCE_CACHE_EVICTIONS,
    SOURCE_CACHE_EVICTIONS_ACTIVE,
    SOURCE_CACHE_HITS,
    SOURCE_CACHE_MISSES,
    THUMBNAILS_RENDERED,
    TILES_RENDERED,
    api_hits,
    api_misses,
    parse_http_request_field,
    read_gauges,
)
from tilecast.common.counters import (
    read as read_counters,
)
from tilecast.common.inflight import inflight_key
from tilecast.common.redisconn import CacheClient, primaries
from tilecast.common.regions import REGIONS_RENDERED
from tilecast.common.taskprotocol import QUEUES
from tilecast.common.workers_live import read_workers

# kombu's Redis transport keeps a queue's priorities 1-9 in lists named
# "{queue}\x06\x16{step}" beside the plain list (priority 0).
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
# Counting markers walks the state Redis with SCAN; past this many keys visited the
# count is left partial (a shared Redis may hold millions of tiles).
MAX_INFLIGHT_SCAN = 2_000_000
INFLIGHT_SCAN_COUNT = 10_000

# Counters every snapshot shows, present in Redis or not (a scraper wants zeros).
KNOWN_COUNTERS = (
    *(api_hits(kind) for kind in API_ANSWER_KINDS),
    *(api_misses(kind) for kind in API_ANSWER_KINDS),
    API_NOT_MODIFIED,
    SOURCE_CACHE_HITS,
    SOURCE_CACHE_MISSES,
    SOURCE_CACHE_EVICTIONS,
    SOURCE_CACHE_EVICTIONS_ACTIVE,
    KEEPER_RUNS,
    KEEPER_DELETED_KEYS,
    KEEPER_DELETED_ACTIVE_KEYS,
    KEEPER_FREED_BYTES,
    PREFETCH_TASKS,
    PREFETCH_TILES,
    PREFETCH_RENDERED,
    PREFETCH_DROPPED,
    TILES_RENDERED,
    THUMBNAILS_RENDERED,
    REGIONS_RENDERED,
    RAW_TILES_READ,
    RAW_TILES_SYNTHESIZED,
    RENDER_ERRORS,
    RENDERS_ABANDONED,
    RENDERS_TOO_COSTLY,
    RENDERS_KILLED,
    RENDERS_DEFERRED,
)

# Counters shown under one labelled family rather than ``tilecast_{name}_total``.
LABELLED: dict[str, tuple[str, dict[str, str]]] = {
    **{
        api_hits(kind): ("tilecast_api_cache_hits_total", {"kind": kind})
        for kind in API_ANSWER_KINDS
    },
    **{
        api_misses(kind): ("tilecast_api_cache_misses_total", {"kind": kind})
        for kind in API_ANSWER_KINDS
    },
    KEEPER_DELETED_KEYS: ("tilecast_tile_cache_evictions_total", {"by": "keeper"}),
    SOURCE_CACHE_HITS: ("tilecast_source_cache_hits_total", {}),
    SOURCE_CACHE_MISSES: ("tilecast_source_cache_misses_total", {}),
    SOURCE_CACHE_EVICTIONS: (
        "tilecast_source_cache_evictions_total",
        {"window": "outside"},
    ),
    SOURCE_CACHE_EVICTIONS_ACTIVE: (
        "tilecast_source_cache_evictions_total",
        {"window": "inside"},
    ),
}

HELP = {
    "tilecast_api_cache_hits_total": "Requests the api answered straight from the tile cache.",
    "tilecast_api_cache_misses_total": "Requests the api sent down the miss path.",
    "tilecast_api_not_modified_total": "304 answers (the client's ETag matched).",
    "tilecast_tile_cache_evictions_total": (
        "Cache Redis keys removed to bound memory: by the keeper (least recently viewed "
        "sources first) or by Redis's own eviction policy (since the server started)."
    ),
    "tilecast_tile_cache_used_bytes": "used_memory of the cache Redis.",
    "tilecast_tile_cache_max_bytes": "maxmemory of the cache Redis (0 = unbounded).",
    "tilecast_tile_cache_keys": "Keys in the cache Redis (DBSIZE).",
    "tilecast_active_sources": "Sources viewed within the activity window.",
    "tilecast_keeper_runs_total": "Times the keeper trimmed the cache above its high-water mark.",
    "tilecast_keeper_deleted_active_keys_total": (
        "Keys the keeper deleted of sources viewed within the window (memory forced it)."
    ),
    "tilecast_keeper_freed_bytes_total": "used_memory the keeper's deletions gave back.",
    "tilecast_source_cache_hits_total": "Worker source-cache lookups that found the source open.",
    "tilecast_source_cache_misses_total": "Worker source-cache lookups that opened the file.",
    "tilecast_source_cache_evictions_total": (
        "Sources closed by the worker source caches' bounds: idle beyond the activity "
        "window (outside) or used within it (inside)."
    ),
    "tilecast_source_cache_open_sources": "Sources open in live worker processes, summed.",
    "tilecast_source_cache_entries": "Source-cache entries (styled too) in live workers, summed.",
    "tilecast_source_cache_bytes": "Estimated bytes of the worker source caches, summed.",
    "tilecast_source_cache_processes": "Worker processes that reported their source cache.",
    "tilecast_inflight_markers": "Tiles being rendered now (in-flight markers).",
    "tilecast_queue_depth": (
        "Tasks waiting in a broker queue (shared queues and live nodes' own queues)."
    ),
    "tilecast_worker_nodes": "Live worker nodes (heartbeating), by pool.",
    "tilecast_http_requests_total": (
        "HTTP requests the api answered, by method, route template and status class."
    ),
    "tilecast_render_duration_seconds": (
        "Time a worker took to render one answer (tile, thumbnail, region, ...), by kind."
    ),
    "tilecast_jobs": "Pre-rendering jobs on record, by state.",
    "tilecast_jobs_with_failures": "Ended pre-rendering jobs of which some tiles failed.",
}
# Reading the jobs' states costs one pipelined HMGET per job on record; past this many
# (newest first) the counts are left partial.
MAX_JOBS_COUNTED = 10_000


@dataclass
class Snapshot:
    counters: dict[str, int] = field(default_factory=dict)
    tile_cache: dict[str, int] = field(default_factory=dict)
    source_cache: dict[str, int] = field(default_factory=dict)
    inflight: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)  # live worker nodes by role
    # (method, status class, route template) -> requests
    http: dict[tuple[str, str, str], int] = field(default_factory=dict)
    render_latency: dict[str, latency.Histogram] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)  # by state, and "with_failures"

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["http"] = [  # JSON objects cannot have tuple keys
            {"method": method, "status": status, "route": route, "count": count}
            for (method, status, route), count in sorted(self.http.items())
        ]
        return body

    @property
    def hit_ratio(self) -> float | None:
        return ratio(self.counters, API_TILE_HITS, API_TILE_MISSES)

    @property
    def source_cache_hit_ratio(self) -> float | None:
        return ratio(self.counters, SOURCE_CACHE_HITS, SOURCE_CACHE_MISSES)


def ratio(counters: Mapping[str, int], hits: str, misses: str) -> float | None:
    total = counters.get(hits, 0) + counters.get(misses, 0)
    return None if total == 0 else counters.get(hits, 0) / total


def collect(
    cache: CacheClient,
    state: redis.Redis,
    broker: redis.Redis | None,
    *,
    window: float,
    queues: Iterable[str] | None = None,
) -> Snapshot:
    """Read everything (a handful of round trips, plus a SCAN for the markers).

    ``queues`` defaults to the shared queues and the live interactive nodes' own
    (affinity) queues."""
    live = read_workers(state)
    if queues is None:
        queues = [*QUEUES, *sorted(w.queue for w in live if w.queue)]
    counters = {name: 0 for name in KNOWN_COUNTERS}
    http: dict[tuple[str, str, str], int] = {}
    for name, value in read_counters(state).items():
        labels = parse_http_request_field(name)
        if labels is None:
            counters[name] = value
        else:
            http[labels] = value
    tile_cache = read_tile_cache(
        cache, window, evicted_by_keeper=counters.get(KEEPER_DELETED_KEYS, 0)
    )
    gauges = read_gauges(state)
    source_cache = {
        "processes": len(gauges),
        "open": sum(int(g.get("open", 0)) for g in gauges.values()),
        "entries": sum(int(g.get("entries", 0)) for g in gauges.values()),
        "bytes": sum(int(g.get("bytes", 0)) for g in gauges.values()),
    }
    workers: dict[str, int] = {}
    for worker in live:
        workers[worker.role] = workers.get(worker.role, 0) + 1
    return Snapshot(
        workers=workers,
        counters=counters,
        tile_cache=tile_cache,
        source_cache=source_cache,
        inflight=count_inflight(state),
        http=http,
        render_latency=latency.read(state),
        jobs=count_jobs(state),
        queues=queue_depths(broker, queues) if broker is not None else {},
    )


def read_tile_cache(cache: CacheClient, window: float, *, evicted_by_keeper: int) -> dict[str, int]:
    """The cache Redis's memory, keys, Redis evictions and active sources: one round
    trip on one server; on a cluster, summed over the primaries (each its own pipeline;
    ``max_bytes`` is 0, unbounded, when any primary has no maxmemory)."""
    since = time.time() - window
    nodes = primaries(cache)
    answers = []
    for node in nodes:
        pipe = node.pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("stats")
        pipe.dbsize()
        if node is cache:  # one server: the activity count shares the round trip
            pipe.zcount(activity.ACTIVE_KEY, since, "+inf")
        answers.append(pipe.execute())
    active = (
        answers[0][3] if nodes[0] is cache else cache.zcount(activity.ACTIVE_KEY, since, "+inf")
    )
    limits = [int(memory.get("maxmemory", 0)) for memory, *_rest in answers]
    return {
        "used_bytes": sum(int(memory["used_memory"]) for memory, *_rest in answers),
        "max_bytes": 0 if 0 in limits else sum(limits),
        "keys": sum(int(answer[2]) for answer in answers),
        "evicted_by_redis": sum(int(answer[1].get("evicted_keys", 0)) for answer in answers),
        "evicted_by_keeper": evicted_by_keeper,
        "active_sources": int(active),  # type: ignore[arg-type]
    }


def count_inflight(state: redis.Redis) -> int:
    """In-flight markers; SCAN stops after about MAX_INFLIGHT_SCAN keys visited."""
    count, cursor, visited = 0, 0, 0
    while True:
        cursor, keys = state.scan(cursor, match=inflight_key("*"), count=INFLIGHT_SCAN_COUNT)
        count += len(keys)
        visited += INFLIGHT_SCAN_COUNT
        if int(cursor) == 0 or visited >= MAX_INFLIGHT_SCAN:
            return count


def count_jobs(state: redis.Redis) -> dict[str, int]:
    """Jobs on record by state (every state present, zeros too), and the ended jobs
    with failed tiles (``with_failures``)."""
    ids = state.zrevrange(keys.JOBS_KEY, 0, MAX_JOBS_COUNTED - 1)
    counts = dict.fromkeys(
        (jobstore.RUNNING, jobstore.FINISHED, jobstore.CANCELLED, "with_failures"), 0
    )
    pipe = state.pipeline(transaction=False)
    for job_id in ids:  # type: ignore[union-attr]
        pipe.hmget(keys.job_record_key(job_id.decode()), "state", "failed")
    for job_state, failed in pipe.execute() if ids else []:
        if job_state is None:
            continue  # expired: the next listing drops it from the index
        name = job_state.decode()
        counts[name] = counts.get(name, 0) + 1
        if name != jobstore.RUNNING and int(failed or 0) > 0:
            counts["with_failures"] += 1
    return counts


def queue_depths(broker: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    names = list(queues)
    pipe = broker.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in PRIORITY_STEPS:
            pipe.llen(f"{name}{PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    per = 1 + len(PRIORITY_STEPS)
    return {name: sum(lengths[i * per : (i + 1) * per]) for i, name in enumerate(names)}


# --- the Prometheus text format ----------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def samples(snapshot: Snapshot) -> list[tuple[str, str, list[Sample]]]:
    """``(family, type, samples)`` in a stable order."""
    families: dict[str, tuple[str, list[Sample]]] = {}

    def add(name: str, kind: str, labels: dict[str, str], value: float) -> None:
        families.setdefault(name, (kind, []))[1].append((name, labels, value))

    for counter, value in sorted(snapshot.counters.items()):
        name, labels = LABELLED.get(counter, (f"tilecast_{_metric_name(counter)}_total", {}))
        add(name, "counter", labels, value)
    add(
        "tilecast_tile_cache_evictions_total",
        "counter",
        {"by": "redis"},
        snapshot.tile_cache.get("evicted_by_redis", 0),
    )
    cache = snapshot.tile_cache
    add("tilecast_tile_cache_used_bytes", "gauge", {}, cache.get("used_bytes", 0))
    add("tilecast_tile_cache_max_bytes", "gauge", {}, cache.get("max_bytes", 0))
    add("tilecast_tile_cache_keys", "gauge", {}, cache.get("keys", 0))
    add("tilecast_active_sources", "gauge", {}, cache.get("active_sources", 0))
    sources = snapshot.source_cache
    add("tilecast_source_cache_open_sources", "gauge", {}, sources.get("open", 0))
    add("tilecast_source_cache_entries", "gauge", {}, sources.get("entries", 0))
    add("tilecast_source_cache_bytes", "gauge", {}, sources.get("bytes", 0))
    add("tilecast_source_cache_processes", "gauge", {}, sources.get("processes", 0))
    add("tilecast_inflight_markers", "gauge", {}, snapshot.inflight)
    for queue, depth in sorted(snapshot.queues.items()):
        add("tilecast_queue_depth", "gauge", {"queue": queue}, depth)
    for role, count in sorted(snapshot.workers.items()):
        add("tilecast_worker_nodes", "gauge", {"role": role}, count)
    for (method, status, route), count in sorted(snapshot.http.items()):
        labels = {"method": method, "route": route, "status": status}
        add("tilecast_http_requests_total", "counter", labels, count)
    _add_histograms(families, "tilecast_render_duration_seconds", snapshot.render_latency)
    for job_state, count in snapshot.jobs.items():
        if job_state == "with_failures":
            add("tilecast_jobs_with_failures", "gauge", {}, count)
        else:
            add("tilecast_jobs", "gauge", {"state": job_state}, count)
    return [(name, kind, items) for name, (kind, items) in families.items()]


def _add_histograms(
    families: dict[str, tuple[str, list[Sample]]],
    name: str,
    histograms: Mapping[str, latency.Histogram],
) -> None:
    """One histogram family: ``_bucket`` (cumulative, ``le``), ``_sum``, ``_count`` per kind."""
    if not histograms:
        return
    items = families.setdefault(name, ("histogram", []))[1]
    for kind, histogram in histograms.items():
        for bound, count in histogram.buckets.items():
            items.append((f"{name}_bucket", {"kind": kind, "le": bound}, count))
        items.append((f"{name}_sum", {"kind": kind}, histogram.sum_seconds))
        items.append((f"{name}_count", {"kind": kind}, histogram.count))


def prometheus_text(snapshot: Snapshot) -> str:
    lines: list[str] = []
    for name, kind, items in samples(snapshot):
        lines.append(f"# HELP {name} {_escape_help(HELP.get(name, name))}")
        lines.append(f"# TYPE {name} {kind}")
        for sample_name, labels, value in items:
            lines.append(f"{sample_name}{_labels(labels)} {_value(value)}")
    return "\n".join(lines) + "\n"


def _metric_name(counter: str) -> str:
    """A counter field as a metric name: [a-zA-Z0-9_] only."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in counter)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + body + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
