"""The api's side of issue 4's caching: hit/miss counting, activity touches on the hit
path, /metrics, and prefetch -- in-process against a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask import Flask

from tests.unit.fakes import METADATA, FakeSender
from tests.unit.test_common_metrics import parse
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common import activity, counters
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_BULK, TASK_RENDER_TILES, tile_requests_from_payload


def make_app(settings: Settings, state: redis.Redis, **changes: Any) -> Flask:
    app = create_app(replace(settings, render_timeout=5.0, **changes))
    svc(app).sender = FakeSender(state)  # records prefetch batches, renders the rest
    if svc(app).prefetcher is not None:
        svc(app).prefetcher.sender = svc(app).sender  # type: ignore[union-attr]
    return app


def svc(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = make_app(settings, state)
    yield app
    svc(app).listener.stop()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def pending(app: Flask) -> dict[str, int]:
    return svc(app).counters.pending()


def test_hits_misses_and_304s_are_counted_in_process_then_flushed(
    app: Flask, state: redis.Redis, source: str
) -> None:
    client = app.test_client()
    first = client.get(f"/item/{source}/tiles/zxy/2/1/1")
    client.get(f"/item/{source}/tiles/zxy/2/1/1")
    client.get(f"/item/{source}/tiles/zxy/2/1/1")
    client.get(f"/item/{source}/tiles/zxy/2/1/1", headers={"If-None-Match": first.headers["ETag"]})
    client.get(f"/item/{source}/tiles/thumbnail")
    counts = pending(app)
    assert counts[counters.API_TILE_MISSES] == 1
    assert counts[counters.API_TILE_HITS] == 2
    assert counts[counters.API_NOT_MODIFIED] == 1
    assert counts[counters.API_THUMBNAIL_MISSES] == 1
    before = counters.read(state)
    svc(app).counters.flush()
    after = counters.read(state)
    assert pending(app) == {}
    assert after[counters.API_TILE_HITS] - before.get(counters.API_TILE_HITS, 0) == 2


def test_the_hit_path_touches_activity_once_per_interval(
    app: Flask, state: redis.Redis, source: str
) -> None:
    client = app.test_client()
    assert client.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200  # miss: touched
    first = activity.last_seen(state)[source]
    time.sleep(0.01)
    for _ in range(5):  # hits within the interval: plain GETs, the score stays
        assert client.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200
    assert activity.last_seen(state)[source] == first
    svc(app).activity.forget(source)  # as if the interval had passed
    assert client.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200
    assert activity.last_seen(state)[source] > first


def test_metrics_endpoint(app: Flask, source: str) -> None:
    client = app.test_client()
    client.get(f"/item/{source}/tiles/zxy/1/0/0")
    client.get(f"/item/{source}/tiles/zxy/1/0/0")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    values = parse(response.get_data(as_text=True))
    assert values['tilecast_api_cache_hits_total{kind="tile"}'] >= 1
    assert values['tilecast_api_cache_misses_total{kind="tile"}'] >= 1
    assert values["tilecast_active_sources"] >= 1
    assert 'tilecast_queue_depth{queue="interactive"}' in values
    assert values["tilecast_tile_cache_max_bytes"] == 1024**3


def test_prefetch_is_on_by_default_and_can_be_turned_off(app: Flask, source: str) -> None:
    assert Settings().prefetch == 1
    assert Settings.from_env({"TILECAST_PREFETCH": "0"}).prefetch == 0
    # Off (the tests' settings): a miss sends its own render only.
    app.test_client().get(f"/item/{source}/tiles/zxy/1/1/1")
    assert [name for name, _p, _q in svc(app).sender.sent] == ["tilecast.render_tile"]  # type: ignore[attr-defined]


BIG = {**METADATA, "sizeX": 20000, "sizeY": 15000, "levels": 8}


def test_prefetch_follows_each_viewer_on_bulk(settings: Settings, state: redis.Redis) -> None:
    """Misses of a pan to the east from one browser: the tiles east of its view go to
    the bulk queue; the same misses from another User-Agent are another viewer, which
    plans on its own."""
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/b.tiff", "b.tiff", dict(BIG)))
    app = make_app(settings, state, prefetch=1)
    try:
        client = app.test_client()
        sender: FakeSender = svc(app).sender  # type: ignore[assignment]
        # As OpenSeadragon asks: nearest the centre of the view (then of the band) first.
        view = sorted(
            ((x, y) for x in range(10, 18) for y in range(10, 15)),
            key=lambda t: (t[0] - 13.5) ** 2 + (t[1] - 12) ** 2,
        )
        band = sorted(
            ((x, y) for x in range(18, 21) for y in range(10, 15)),
            key=lambda t: (t[0] - 19) ** 2 + (t[1] - 12) ** 2,
        )
        for x, y in view + band:
            headers = {"User-Agent": "browser-a"}
            assert (
                client.get(f"/item/{source_id}/tiles/zxy/6/{x}/{y}", headers=headers).status_code
                == 200
            )
        prefetcher = svc(app).prefetcher
        assert prefetcher is not None
        prefetcher.drain()  # prefetch runs on a thread of its own
        tasks = [(p, q) for name, p, q in sender.sent if name == TASK_RENDER_TILES]
        assert tasks and all(queue == QUEUE_BULK for _p, queue in tasks)
        asked = [r for payload, _q in tasks for r in tile_requests_from_payload(payload)]
        assert asked and all(r.z == 6 and r.x >= 18 for r in asked)  # ahead, east
        # A viewer asking a tile whose prefetch is still queued does not wait for the bulk
        # queue: its own render goes to the interactive queue at once.
        ahead = asked[0]
        headers = {"User-Agent": "browser-a"}
        url = f"/item/{source_id}/tiles/zxy/{ahead.z}/{ahead.x}/{ahead.y}"
        assert client.get(url, headers=headers).status_code == 200
        own = [(p["request"], q) for name, p, q in sender.sent if name == "tilecast.render_tile"]
        assert ({"x": ahead.x, "y": ahead.y}, "interactive") in [
            ({"x": r["x"], "y": r["y"]}, q) for r, q in own
        ]
        before = len(sender.sent)
        # The same tiles (cached now: hits) plan nothing; another browser's misses elsewhere do.
        for x, y in view:
            headers = {"User-Agent": "browser-b"}
            client.get(f"/item/{source_id}/tiles/zxy/6/{x}/{y + 15}", headers=headers)
        prefetcher.drain()
        later = [p for name, p, _q in sender.sent[before:] if name == TASK_RENDER_TILES]
        assert all(r.y >= 15 for p in later for r in tile_requests_from_payload(p))
    finally:
        svc(app).listener.stop()


def test_tile_answers_say_hit_or_miss(app: Flask, source: str) -> None:
    client = app.test_client()
    first = client.get(f"/item/{source}/tiles/zxy/2/0/1")
    second = client.get(f"/item/{source}/tiles/zxy/2/0/1")
    assert first.headers["X-Tilecast-Cache"] == "miss"
    assert second.headers["X-Tilecast-Cache"] == "hit"
    etag = second.headers["ETag"]
    not_modified = client.get(f"/item/{source}/tiles/zxy/2/0/1", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and "X-Tilecast-Cache" not in not_modified.headers
    thumb = client.get(f"/item/{source}/tiles/thumbnail")
    assert thumb.headers["X-Tilecast-Cache"] == "miss"
