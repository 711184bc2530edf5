"""Every image-like answer goes through the one hit and miss path (api/miss/answers.py): a
region, thumbnail, pixel, histogram, band information or associated image gets what a
tile gets -- X-Tilecast-Cache, the ETag and Cache-Control, hit/miss counters of its
kind, 304s counted, its source recorded as viewed -- in-process against a real Redis."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.unit.fakes import METADATA
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common import activity, counters
from tilecast.common.associated import AssociatedRequest
from tilecast.common.inflight import Completion, announce
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import (
    TASK_RENDER_ASSOCIATED,
    TASK_RENDER_BANDS,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_PIXEL,
    TASK_RENDER_REGION,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest

REQUEST_TYPES: dict[str, Any] = {
    TASK_RENDER_TILE: TileRequest,
    TASK_RENDER_THUMBNAIL: ThumbnailRequest,
    TASK_RENDER_REGION: RegionRequest,
    TASK_RENDER_PIXEL: PixelRequest,
    TASK_RENDER_HISTOGRAM: HistogramRequest,
    TASK_RENDER_BANDS: BandsRequest,
    TASK_RENDER_ASSOCIATED: AssociatedRequest,
}
LABEL = "label"


class FakeWorker:
    """Answers every render task at once: writes ``fake:{key}`` under the request's key
    (an associated image list: the one name ``label``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sent: list[str] = []

    def send(self, name: str, payload: dict[str, Any], queue: str = "interactive") -> str:
        self.sent.append(name)
        threading.Thread(target=self._work, args=(name, payload), daemon=True).start()
        return queue

    def _work(self, name: str, payload: dict[str, Any]) -> None:
        time.sleep(0.02)
        request = REQUEST_TYPES[name].from_payload(payload["request"])
        key = request.key(payload["generation"])
        listing = isinstance(request, AssociatedRequest) and request.is_list
        self.client.set(key, json.dumps([LABEL]).encode() if listing else b"fake:" + key.encode())
        announce(self.client, Completion(key))


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0))
    services(app).sender = FakeWorker(state)
    yield app
    services(app).listener.stop()


def services(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


# (path under /item/{id}/tiles, the kind its counters are labelled with)
ANSWERS = [
    ("zxy/1/0/0", counters.KIND_TILE),
    ("thumbnail?width=64", counters.KIND_THUMBNAIL),
    ("region?left=10&top=20&right=400&bottom=300&width=100", counters.KIND_REGION),
    ("pixel?left=5&top=6", counters.KIND_PIXEL),
    ("histogram?bins=8&width=300", counters.KIND_HISTOGRAM),
    ("bands", counters.KIND_BANDS),
    (f"images/{LABEL}", counters.KIND_ASSOCIATED),
]


@pytest.mark.parametrize(("path", "kind"), ANSWERS)
def test_every_answer_is_counted_and_headed_like_a_tile(
    app: Flask, state: redis.Redis, source: str, path: str, kind: str
) -> None:
    client: FlaskClient = app.test_client()
    url = f"/item/{source}/tiles/{path}"
    first = client.get(url)
    assert first.status_code == 200, first.get_data(as_text=True)
    second = client.get(url)
    assert first.headers["X-Tilecast-Cache"] == "miss"
    assert second.headers["X-Tilecast-Cache"] == "hit"
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert first.headers["Cache-Control"] == services(app).cache_control
    assert activity.last_seen(state)[source] > 0  # the miss recorded the viewing

    not_modified = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.headers["ETag"] == first.headers["ETag"]
    assert "X-Tilecast-Cache" not in not_modified.headers

    counts = services(app).counters.pending()
    assert counts[counters.api_misses(kind)] == 1
    assert counts[counters.api_hits(kind)] == 1
    assert counts[counters.API_NOT_MODIFIED] == 1


def test_every_kind_has_its_labelled_metrics(app: Flask, source: str) -> None:
    client = app.test_client()
    client.get(f"/item/{source}/tiles/bands")
    client.get(f"/item/{source}/tiles/bands")
    services(app).counters.flush()
    text = client.get("/metrics").get_data(as_text=True)
    for kind in counters.API_ANSWER_KINDS:
        assert f'tilecast_api_cache_hits_total{{kind="{kind}"}}' in text
        assert f'tilecast_api_cache_misses_total{{kind="{kind}"}}' in text


def test_an_unknown_associated_image_is_a_404_before_its_render(app: Flask, source: str) -> None:
    response = app.test_client().get(f"/item/{source}/tiles/images/macro")
    assert response.status_code == 404
    assert services(app).sender.sent == [TASK_RENDER_ASSOCIATED]  # type: ignore[attr-defined]
