"""Render latency histograms, HTTP request counters and job counts in /metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.unit.test_common_metrics import parse
from tilecast.common import counters, latency, metrics
from tilecast.common.keys import JOBS_KEY
from tilecast.common.keys import job_record_key as record_key
from tilecast.common.redisconn import connect


@pytest.fixture
def private_db(redis_url: str) -> Iterator[redis.Redis]:
    """A database of the test Redis nobody else writes to (counts are compared exactly)."""
    client = connect(redis_url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_buckets_are_cumulative_with_sum_and_count(private_db: redis.Redis) -> None:
    recorder = latency.LatencyRecorder()
    for seconds in (0.003, 0.02, 0.02, 0.7, 100.0):
        recorder.observe("tile", seconds)
    recorder.observe("region", 0.2)
    with recorder.timed("thumbnail"):
        pass
    with pytest.raises(ValueError), recorder.timed("thumbnail"):
        raise ValueError("a failed render is not a duration")
    pipe = private_db.pipeline(transaction=False)
    latency.write(pipe, recorder.take())
    pipe.execute()
    assert recorder.take() == {}  # taken once
    histograms = latency.read(private_db)
    assert list(histograms) == ["region", "thumbnail", "tile"]
    tile = histograms["tile"]
    assert tile.count == 5
    assert tile.sum_seconds == pytest.approx(100.743)
    assert tile.buckets["0.005"] == 1
    assert tile.buckets["0.025"] == 3
    assert tile.buckets["1.0"] == 4
    assert tile.buckets["60.0"] == 4
    assert tile.buckets["+Inf"] == 5
    assert histograms["thumbnail"].count == 1
    counts = list(tile.buckets.values())
    assert counts == sorted(counts)


def test_the_snapshot_shows_http_latency_and_jobs(private_db: redis.Redis) -> None:
    counters.incr_many(
        private_db,
        {
            counters.http_request_field("GET", 200, "/item/{item_id}/tiles/zxy/{z}/{x}/{y}"): 7,
            counters.http_request_field("GET", 404, None): 2,
            counters.TILES_RENDERED: 3,
        },
    )
    recorder = latency.LatencyRecorder()
    recorder.observe("tile", 0.04)
    latency.write(private_db, recorder.take())
    for state, failed in (("running", 0), ("finished", 0), ("finished", 3), ("cancelled", 0)):
        job_id = uuid.uuid4().hex[:16]
        private_db.hset(record_key(job_id), mapping={"state": state, "failed": failed})
        private_db.zadd(JOBS_KEY, {job_id: 1})
    private_db.zadd(JOBS_KEY, {"expired": 1})

    snapshot = metrics.collect(private_db, private_db, private_db, window=600)
    assert snapshot.jobs == {"running": 1, "finished": 2, "cancelled": 1, "with_failures": 1}
    assert "http|GET|2xx|/item/{item_id}/tiles/zxy/{z}/{x}/{y}" not in snapshot.counters
    body = snapshot.as_dict()
    assert {"method": "GET", "status": "4xx", "route": "unmatched", "count": 2} in body["http"]

    text = metrics.prometheus_text(snapshot)
    values = parse(text)
    tile_route = 'method="GET",route="/item/{item_id}/tiles/zxy/{z}/{x}/{y}",status="2xx"'
    assert values[f"tilecast_http_requests_total{{{tile_route}}}"] == 7
    assert values['tilecast_render_duration_seconds_bucket{kind="tile",le="0.025"}'] == 0
    assert values['tilecast_render_duration_seconds_bucket{kind="tile",le="0.05"}'] == 1
    assert values['tilecast_render_duration_seconds_bucket{kind="tile",le="+Inf"}'] == 1
    assert values['tilecast_render_duration_seconds_count{kind="tile"}'] == 1
    assert values['tilecast_render_duration_seconds_sum{kind="tile"}'] == pytest.approx(0.04)
    assert values['tilecast_jobs{state="running"}'] == 1
    assert values["tilecast_jobs_with_failures"] == 1
    assert "# TYPE tilecast_render_duration_seconds histogram" in text
    assert "# TYPE tilecast_http_requests_total counter" in text
    assert "# HELP tilecast_jobs " in text
