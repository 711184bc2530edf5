"""The Redis key strings are a protocol between processes of possibly different versions
and Redis servers that outlive them: pinned here, so a change is a decision."""

from __future__ import annotations

from tilecast.common import keys


def test_every_key_string_is_pinned() -> None:
    assert keys.cache_key("tile", "src", 3, 0, 1, 2, 4, "-", "jpeg:95") == (
        "tc:tile:src:3:0:1:2:4:-:jpeg:95"
    )
    assert keys.ALL_PATTERN == "tc:*"
    assert keys.DONE_CHANNEL == "tc:done"
    assert keys.inflight_key("tc:tile:k") == "tc:inflight:tc:tile:k"
    assert keys.waiting_key("k") == "tc:waiting:k"
    assert keys.refused_key("k") == "tc:refused:k"
    assert keys.SOURCES_KEY == "tc:sources"
    assert keys.ACTIVE_KEY == "tc:active"
    assert keys.generation_key("s") == "tc:gen:s"
    assert keys.describe_key("s") == "tc:describe:s"
    assert keys.STATS_KEY == "tc:stats"
    assert keys.SOURCE_CACHE_GAUGES_KEY == "tc:sourcecache"
    assert keys.LATENCY_KEY == "tc:latency"
    assert keys.WORKERS_KEY == "tc:workers"
    assert keys.GONE_KEY == "tc:workers:gone"
    assert keys.SWEEP_LOCK_KEY == "tc:workers:sweep"
    assert keys.worker_key("n@h") == "tc:worker:n@h"
    assert keys.SHARE_SOURCES_KEY == "tc:share:sources"
    assert keys.SHARE_PENDING_PREFIX == "tc:share:pending:"
    assert keys.share_pending_key("s") == "tc:share:pending:s"
    assert keys.share_running_key("s") == "tc:share:running:s"
    assert keys.JOBS_KEY == "tc:jobs"
    assert keys.ACTIVE_JOBS_KEY == "tc:jobs:active"
    assert keys.DRIVER_LOCK_KEY == "tc:jobs:driver"
    assert keys.job_record_key("j") == "tc:job:j"
    assert keys.job_settled_key("j") == "tc:job:j:settled"
    assert keys.job_leases_key("j") == "tc:job:j:leases"
    assert keys.job_attempts_key("j") == "tc:job:j:attempts"
    assert keys.job_errors_key("j") == "tc:job:j:errors"
    assert keys.job_spec_key("h") == "tc:jobspec:h"
    assert keys.KEEPER_LOCK_KEY == "tc:keeper:lock"
    assert keys.ratelimit_key("d") == "tc:ratelimit:d"
    assert keys.prefetch_viewer_key("v") == "tc:pf:viewer:v"
    assert keys.prefetch_queued_key("k") == "tc:pf:queued:k"
    assert keys.prefetch_budget_key("all", 7) == "tc:pf:budget:all:7"
    assert keys.girder_block_key("f", 65536, 7) == "tc:girder:block:f:65536:7"
    assert keys.girder_file_key("i", 2) == "tc:girder:file:i:2"


def test_the_job_scripts_build_record_keys_from_the_same_prefix() -> None:
    from tilecast.common import jobstore

    assert f"'{keys.JOB_PREFIX}' .. existing" in jobstore._CREATE
    assert keys.job_record_key("x") == keys.JOB_PREFIX + "x"
