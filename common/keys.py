"""Every Redis key (and the one channel) tilecast names, built here and nowhere else.

These strings are a protocol: api processes, workers and the CLI of one deployment --
possibly of different versions during a rolling upgrade -- meet on them, and a cache or
state Redis outlives any one process. Change none without a migration
(tests/unit/test_common_keys.py pins them). Everything lives under ``tc:``.

Cache Redis (disposable): rendered answers and intermediates (:func:`cache_key`), the
viewed-sources set, shared remote-file blocks. State Redis (never evicted): the rest.
"""

from __future__ import annotations

PREFIX = "tc:"
# Every key tilecast writes matches it (the keeper scans the cache Redis with it).
ALL_PATTERN = f"{PREFIX}*"


# --- cached answers (DESIGN.md: Keys) -------------------------------------------------------


def cache_key(
    kind: str,
    source: str,
    generation: int,
    frame: int,
    z: int | str,
    x: int | str,
    y: int | str,
    style: str,
    encoding: str,
) -> str:
    """``tc:{kind}:{source}:{generation}:{frame}:{z}:{x}:{y}:{style}:{encoding}``: a tile,
    thumbnail, region, statistic... (the keeper parses it back from the right)."""
    return f"{PREFIX}{kind}:{source}:{generation}:{frame}:{z}:{x}:{y}:{style}:{encoding}"


# --- single flight (common/inflight.py, common/waiting.py, common/refusals.py) -----------

# The pub/sub channel every completion is announced on.
DONE_CHANNEL = f"{PREFIX}done"


def inflight_key(key: str) -> str:
    return f"{PREFIX}inflight:{key}"


def waiting_key(key: str) -> str:
    return f"{PREFIX}waiting:{key}"


def refused_key(key: str) -> str:
    return f"{PREFIX}refused:{key}"


# --- sources (common/registry.py, common/activity.py) -------------------------------------

SOURCES_KEY = f"{PREFIX}sources"
ACTIVE_KEY = f"{PREFIX}active"


def generation_key(source_id: str) -> str:
    return f"{PREFIX}gen:{source_id}"


def describe_key(source_id: str) -> str:
    return f"{PREFIX}describe:{source_id}"


# --- counters and gauges (common/counters.py, common/latency.py) -----------------------------

STATS_KEY = f"{PREFIX}stats"
SOURCE_CACHE_GAUGES_KEY = f"{PREFIX}sourcecache"
LATENCY_KEY = f"{PREFIX}latency"


# --- worker nodes (common/workers_live.py, workers/heartbeat.py) ---------------------------

WORKERS_KEY = f"{PREFIX}workers"
GONE_KEY = f"{PREFIX}workers:gone"
# The lease of the one node that sweeps dead nodes' queues, once a period.
SWEEP_LOCK_KEY = f"{PREFIX}workers:sweep"


def worker_key(node: str) -> str:
    return f"{PREFIX}worker:{node}"


# --- the pool share (common/share.py) -------------------------------------------------------

SHARE_PREFIX = f"{PREFIX}share:"
SHARE_SOURCES_KEY = f"{SHARE_PREFIX}sources"
# Lua scripts build a source's pending key from this prefix.
SHARE_PENDING_PREFIX = f"{SHARE_PREFIX}pending:"


def share_pending_key(source: str) -> str:
    return f"{SHARE_PENDING_PREFIX}{source}"


def share_running_key(source: str) -> str:
    return f"{SHARE_PREFIX}running:{source}"


# --- jobs (common/jobstore.py) ------------------------------------------------------------------

JOBS_KEY = f"{PREFIX}jobs"
ACTIVE_JOBS_KEY = f"{PREFIX}jobs:active"
# The lease of the one job driver.
DRIVER_LOCK_KEY = f"{PREFIX}jobs:driver"
# A list the job driver waits on between its steps (BLPOP): a submitted job or a settled
# batch pushes a token (the list keeps one), so the driver acts at once, not a period later.
DRIVER_WAKE_KEY = f"{PREFIX}jobs:wake"
# A Lua script builds a job's record key from this prefix.
JOB_PREFIX = f"{PREFIX}job:"


def job_record_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def job_settled_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}:settled"


def job_leases_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}:leases"


def job_attempts_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}:attempts"


def job_errors_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}:errors"


def job_spec_key(spec_hash: str) -> str:
    return f"{PREFIX}jobspec:{spec_hash}"


# --- the cache keeper (workers/keeper.py) ---------------------------------------------------

# The lease of the one keeper of the cluster.
KEEPER_LOCK_KEY = f"{PREFIX}keeper:lock"


# --- rate limits (api/middleware/ratelimit.py) ----------------------------------------------------


def ratelimit_key(client_digest: str) -> str:
    return f"{PREFIX}ratelimit:{client_digest}"


# --- remote files read through Girder (workers/girder/shared.py) --------------------------


def girder_block_key(file_key: str, block_size: int, index: int) -> str:
    return f"{PREFIX}girder:block:{file_key}:{block_size}:{index}"


def remote_block_key(content_key: str, block_size: int, index: int) -> str:
    """A block of a URL source's object (workers/remote/): ``content_key`` names its
    URL and version (ETag, version id), so a replaced object's blocks never mix."""
    return f"{PREFIX}remote:block:{content_key}:{block_size}:{index}"


def remote_document_key(prefix_key: str, name: str) -> str:
    """A small document (zarr metadata) below a URL prefix (workers/remote/prefix.py):
    ``prefix_key`` names the prefix's URL and its root documents' content."""
    return f"{PREFIX}remote:doc:{prefix_key}:{name}"


def girder_file_key(item_id: str, generation: int) -> str:
    return f"{PREFIX}girder:file:{item_id}:{generation}"
