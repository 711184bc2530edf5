"""The Prometheus text format of /metrics and the snapshot it is made of."""

from __future__ import annotations

import json
import re
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tilecast.common import activity, metrics
from tilecast.common.counters import (
    API_TILE_HITS,
    API_TILE_MISSES,
    KEEPER_DELETED_KEYS,
    PREFETCH_TILES,
    SOURCE_CACHE_EVICTIONS_ACTIVE,
    SOURCE_CACHE_GAUGES_KEY,
    STATS_KEY,
    BatchedCounters,
    incr,
    read_gauges,
    write_gauges,
)
from tilecast.common.counters import (
    read as read_counters,
)
from tilecast.common.inflight import claim

# The text exposition format, version 0.0.4: comments, then samples
# ``name{label="value",...} number``.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf"
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? ({VALUE})$")
HELP = re.compile(rf"^# HELP ({NAME}) .+$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse(text: str) -> dict[str, float]:
    """Validate every line; ``name{labels}`` -> value. Each family is declared (HELP,
    TYPE) once, before its samples, and its samples are contiguous."""
    assert text.endswith("\n")
    values: dict[str, float] = {}
    declared: list[str] = []
    current = ""
    for line in text.splitlines():
        if match := HELP.match(line):
            assert match.group(1) not in declared, f"family declared twice: {line}"
            declared.append(match.group(1))
            current = match.group(1)
            continue
        if match := TYPE.match(line):
            assert match.group(1) == current
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        suffixes = ("", "_bucket", "_sum", "_count")  # a histogram's samples
        assert match.group(1) in {current + s for s in suffixes}, f"outside its family: {line}"
        values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def test_prometheus_text_is_well_formed_and_named() -> None:
    snapshot = metrics.Snapshot(
        counters={
            **{name: 0 for name in metrics.KNOWN_COUNTERS},
            API_TILE_HITS: 90,
            API_TILE_MISSES: 10,
            KEEPER_DELETED_KEYS: 7,
            SOURCE_CACHE_EVICTIONS_ACTIVE: 2,
            "odd-name!": 1,
        },
        tile_cache={
            "used_bytes": 1000,
            "max_bytes": 4000,
            "keys": 12,
            "evicted_by_redis": 3,
            "evicted_by_keeper": 7,
            "active_sources": 2,
        },
        source_cache={"processes": 2, "open": 3, "entries": 5, "bytes": 4096},
        inflight=4,
        queues={"interactive": 5, "bulk": 6},
    )
    values = parse(metrics.prometheus_text(snapshot))
    assert values['tilecast_api_cache_hits_total{kind="tile"}'] == 90
    assert values['tilecast_api_cache_misses_total{kind="tile"}'] == 10
    assert values['tilecast_api_cache_hits_total{kind="thumbnail"}'] == 0
    assert values['tilecast_tile_cache_evictions_total{by="keeper"}'] == 7
    assert values['tilecast_tile_cache_evictions_total{by="redis"}'] == 3
    assert values['tilecast_source_cache_evictions_total{window="inside"}'] == 2
    assert values['tilecast_source_cache_evictions_total{window="outside"}'] == 0
    assert values["tilecast_tiles_rendered_total"] == 0
    assert values["tilecast_odd_name__total"] == 1
    assert values["tilecast_tile_cache_used_bytes"] == 1000
    assert values["tilecast_tile_cache_max_bytes"] == 4000
    assert values["tilecast_active_sources"] == 2
    assert values["tilecast_source_cache_open_sources"] == 3
    assert values["tilecast_source_cache_bytes"] == 4096
    assert values["tilecast_inflight_markers"] == 4
    assert values['tilecast_queue_depth{queue="bulk"}'] == 6
    assert snapshot.hit_ratio == 0.9


def test_label_values_are_escaped() -> None:
    text = metrics.prometheus_text(metrics.Snapshot(queues={'we"ird\\q\n': 1}))
    assert 'tilecast_queue_depth{queue="we\\"ird\\\\q\\n"} 1' in text
    parse(text)


def test_collect_reads_counters_gauges_markers_and_queues(state: redis.Redis) -> None:
    source = uuid.uuid4().hex
    before = metrics.collect(state, state, state, window=600.0)
    incr(state, API_TILE_HITS, 3)
    write_gauges(state, {"open": 2, "entries": 4, "bytes": 1000}, name=f"test:{source}")
    activity.touch(state, source)
    claim(state, f"tc:tile:{source}:1:0:0:0:0:none:PNG", "test", 30)
    queue = f"q-{source}"
    state.rpush(queue, "a", "b")
    state.rpush(f"{queue}{metrics.PRIORITY_SEPARATOR}3", "c")
    after = metrics.collect(state, state, state, window=600.0, queues=[queue])
    assert after.counters[API_TILE_HITS] == before.counters[API_TILE_HITS] + 3
    assert after.counters[PREFETCH_TILES] >= 0  # known counters are always present
    assert after.source_cache["open"] == before.source_cache["open"] + 2
    assert after.source_cache["processes"] == before.source_cache["processes"] + 1
    assert after.tile_cache["active_sources"] >= 1
    assert after.tile_cache["max_bytes"] == 1024**3  # the test server's maxmemory
    assert after.inflight >= before.inflight + 1
    assert after.queues == {queue: 3}
    state.hdel(SOURCE_CACHE_GAUGES_KEY, f"test:{source}")


def test_stale_gauges_are_dropped(state: redis.Redis) -> None:
    name = f"gone:{uuid.uuid4().hex}"
    state.hset(SOURCE_CACHE_GAUGES_KEY, name, json.dumps({"open": 9, "t": 1.0}))
    assert name not in read_gauges(state)
    assert not state.hexists(SOURCE_CACHE_GAUGES_KEY, name)


def test_batched_counters_keep_their_counts_until_a_flush_succeeds(state: redis.Redis) -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    counters = BatchedCounters(unreachable, period=3600)
    name = f"test_{uuid.uuid4().hex}"
    counters.add(name, 2)
    counters.add(name)
    counters.flush()  # Redis is unreachable: nothing is lost
    assert counters.pending() == {name: 3}
    counters.state = state
    counters.flush()
    assert counters.pending() == {}
    assert read_counters(state)[name] == 3
    state.hdel(STATS_KEY, name)
