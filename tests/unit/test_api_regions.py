"""The region, pixel, histogram and bands endpoints in-process (Flask test client) against a
real Redis and a fake worker: parsing, the checks a miss pays for, the one miss path
(api/miss/answers.py), the one-round-trip hit path."""

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
from tilecast.common.inflight import Completion, announce
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import (
    TASK_RENDER_BANDS,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_PIXEL,
    TASK_RENDER_REGION,
)

REQUEST_TYPES: dict[str, Any] = {
    TASK_RENDER_REGION: RegionRequest,
    TASK_RENDER_PIXEL: PixelRequest,
    TASK_RENDER_HISTOGRAM: HistogramRequest,
    TASK_RENDER_BANDS: BandsRequest,
}


class FakeRegionWorker:
    """Answers the four tasks at once: writes ``fake:{key}`` under the request's key."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sent: list[tuple[str, dict[str, Any], str]] = []

    def send(self, name: str, payload: dict[str, Any], queue: str = "interactive") -> str:
        self.sent.append((name, payload, queue))
        threading.Thread(target=self._work, args=(name, payload), daemon=True).start()
        return queue

    def _work(self, name: str, payload: dict[str, Any]) -> None:
        time.sleep(0.02)
        request = REQUEST_TYPES[name].from_payload(payload["request"])
        key = request.key(payload["generation"])
        self.client.set(key, b"fake:" + key.encode())
        announce(self.client, Completion(key))


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0, max_region_pixels=500 * 500))
    services(app).sender = FakeRegionWorker(state)
    yield app
    services(app).listener.stop()


def services(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


def worker(app: Flask) -> FakeRegionWorker:
    return services(app).sender  # type: ignore[return-value]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def source(state: redis.Redis) -> str:
    """A registered 1000 x 700, 3-level, 2-frame image."""
    source_id = uuid.uuid4().hex[:24]
    metadata = {**METADATA, "frames": [{"Frame": 0}, {"Frame": 1}]}
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", metadata))
    return source_id


@pytest.mark.parametrize(
    ("endpoint", "query", "task", "content_type"),
    [
        ("region", "left=10&top=20&right=400&bottom=300&width=100&encoding=PNG",
         TASK_RENDER_REGION, "image/png"),
        ("region", "encoding=AVIF&width=50", TASK_RENDER_REGION, "image/avif"),
        ("pixel", "left=5&top=6&frame=1", TASK_RENDER_PIXEL, "application/json"),
        ("histogram", "bins=8&roundRange=true&width=300", TASK_RENDER_HISTOGRAM,
         "application/json"),
        ("bands", "frame=1", TASK_RENDER_BANDS, "application/json"),
    ],
)  # fmt: skip
def test_miss_then_hit(
    app: Flask, client: FlaskClient, source: str, endpoint: str, query: str, task: str,
    content_type: str,
) -> None:  # fmt: skip
    first = client.get(f"/item/{source}/tiles/{endpoint}?{query}")
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.content_type == content_type
    second = client.get(f"/item/{source}/tiles/{endpoint}?{query}")
    assert second.data == first.data and second.headers["ETag"] == first.headers["ETag"]
    assert len(worker(app).sent) == 1
    name, payload, queue = worker(app).sent[0]
    assert (name, queue) == (task, "interactive")
    request = REQUEST_TYPES[task].from_payload(payload["request"])
    assert first.data == b"fake:" + request.key(payload["generation"]).encode()


@pytest.mark.parametrize(
    ("endpoint", "query", "parameter"),
    [
        ("region", "left=1000", "left"),
        ("region", "top=700&bottom=900", "top"),
        ("region", "left=10&right=5", "right"),
        ("region", "width=600", "width"),  # 600 x 420: past the 500 x 500 bound
        ("region", "frame=2", "frame"),
        ("histogram", "right=0", "right"),
        ("histogram", "width=1000&height=1000", "width"),
        ("pixel", "frame=5", "frame"),
        ("bands", "frame=2", "frame"),
    ],
)
def test_a_miss_is_checked_before_any_task_is_sent(
    app: Flask, client: FlaskClient, source: str, endpoint: str, query: str, parameter: str
) -> None:
    response = client.get(f"/item/{source}/tiles/{endpoint}?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["parameter"] == parameter
    assert worker(app).sent == []


def test_equivalent_spellings_share_one_key(app: Flask, client: FlaskClient, source: str) -> None:
    for query in ("left=10&top=0&width=100", "left=10.0&top=-0&width=100&units=base_pixels"):
        assert client.get(f"/item/{source}/tiles/region?{query}").status_code == 200
    assert len(worker(app).sent) == 1


def test_region_payload_carries_every_parameter(
    app: Flask, client: FlaskClient, source: str
) -> None:
    style = json.dumps({"band": 1, "palette": "#f00"})
    query = {
        "left": "0.1", "top": "0.2", "regionWidth": "0.5", "regionHeight": "0.25",
        "units": "fraction", "width": "90", "height": "80", "frame": "1", "style": style,
        "encoding": "WEBP", "webpQuality": "70",
    }  # fmt: skip
    assert client.get(f"/item/{source}/tiles/region", query_string=query).status_code == 200
    request = RegionRequest.from_payload(worker(app).sent[0][1]["request"])
    assert (request.spec.left, request.spec.width, request.spec.units) == (0.1, 0.5, "fraction")
    assert (request.width, request.height, request.frame) == (90, 80, 1)
    assert request.style == '{"band":1,"palette":"#f00"}'
    assert (request.encoding.format, request.encoding.webp_quality) == ("WEBP", 70)


def test_hit_path_is_one_redis_round_trip(
    app: Flask, client: FlaskClient, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/item/{source}/tiles/histogram?bins=16&width=300"
    assert client.get(path).status_code == 200  # warm the cache and the generation memo
    commands: list[str] = []
    svc = services(app)
    for conn in {id(svc.cache.client): svc.cache.client, id(svc.state): svc.state}.values():
        original = conn.execute_command

        def counting(*args: object, _original=original, **kwargs: object) -> object:
            commands.append(str(args[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(conn, "execute_command", counting)
    assert client.get(path).status_code == 200
    assert client.get(f"{path}&frame=0").status_code == 200
    assert commands == ["GET", "GET"]


# --- large_image's other region options: units, magnification, fill, downloads -----------


@pytest.fixture
def measured(state: redis.Redis) -> str:
    """A registered 1000 x 700 image with 0.00025 mm pixels (magnification 40)."""
    source_id = uuid.uuid4().hex[:24]
    metadata = {**METADATA, "mm_x": 0.00025, "mm_y": 0.00025, "magnification": 40.0}
    SourceRegistry(state).add(SourceRecord(source_id, "/x/b.tiff", "slide 7.svs", metadata))
    return source_id


def test_units_and_magnification_reach_the_worker(
    app: Flask, client: FlaskClient, measured: str
) -> None:
    query = "left=0.01&top=0.01&right=0.1&bottom=0.1&units=millimeters&magnification=20"
    assert client.get(f"/item/{measured}/tiles/region?{query}").status_code == 200
    request = RegionRequest.from_payload(worker(app).sent[0][1]["request"])
    assert (request.spec.units, request.scale.magnification) == ("mm", 20.0)
    inexact = client.get(f"/item/{measured}/tiles/region?right=100&magnification=13&exact=1")
    assert inexact.status_code == 400 and inexact.get_json()["parameter"] == "exact"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("right=0.1&units=mm", "units"),  # the image has no pixel size
        ("right=10&units=pixels&width=5", "units"),  # mag_pixels need a magnification
        ("right=100&bottom=100&width=50&height=50&fill=blurple", "fill"),
        ("right=100&bottom=100&width=400&height=800&fill=red", "width"),  # boxed: past bound
        ("right=100&resample=sometimes&width=5", None),
    ],
)
def test_bad_region_options_name_the_parameter(
    app: Flask, client: FlaskClient, source: str, query: str, parameter: str | None
) -> None:
    response = client.get(f"/item/{source}/tiles/region?{query}")
    if parameter is None:  # large_image's region resample changes nothing: ignored
        assert response.status_code == 200
        return
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["parameter"] == parameter
    assert worker(app).sent == []


def test_ignored_options_share_one_key(app: Flask, client: FlaskClient, source: str) -> None:
    for query in (
        "right=100&bottom=100&width=50",
        "right=100&bottom=100&width=50&fill=red",  # one side: no letterbox
        "right=100&bottom=100&width=50&magnification=20",  # a width wins
        "right=100&bottom=100&width=50&contentDisposition=attachment",
        "right=100&bottom=100&width=50&resample=false",
    ):
        response = client.get(f"/item/{source}/tiles/region?{query}")
        assert response.status_code == 200, query
    assert len(worker(app).sent) == 1
    boxed = "right=100&bottom=100&width=50&height=50"
    for query in (f"{boxed}&fill=red", f"{boxed}&fill=%23FF0000", f"{boxed}&fill=none", boxed):
        assert client.get(f"/item/{source}/tiles/region?{query}").status_code == 200
    assert len(worker(app).sent) == 3  # red (either spelling), and no fill
    request = RegionRequest.from_payload(worker(app).sent[1][1]["request"])
    assert request.fill == "#ff0000ff"


def test_content_disposition(app: Flask, client: FlaskClient, measured: str) -> None:
    path = f"/item/{measured}/tiles/region?right=100&bottom=100&encoding=PNG"
    plain = client.get(path)
    assert "Content-Disposition" not in plain.headers
    attached = client.get(f"{path}&contentDisposition=attachment")
    assert attached.headers["Content-Disposition"] == (
        "attachment; filename=\"slide 7-region.png\"; filename*=UTF-8''slide%207-region.png"
    )
    assert attached.data == plain.data and attached.headers["ETag"] == plain.headers["ETag"]
    named = client.get(
        f"/item/{measured}/tiles/region",
        query_string={
            "right": "100", "bottom": "100", "encoding": "PNG", "contentDisposition": "inline",
            "contentDispositionFilename": 'é"\n.png',
        },
    )  # fmt: skip
    assert named.headers["Content-Disposition"] == (
        "inline; filename=\".png\"; filename*=UTF-8''%C3%A9%22%0A.png"
    )
    ignored = client.get(f"{path}&contentDisposition=download")
    assert "Content-Disposition" not in ignored.headers
    assert len(worker(app).sent) == 1


def test_thumbnail_fill_parsing(settings: Settings) -> None:
    from tilecast.api.parsing import parse_thumbnail_request

    boxed = parse_thumbnail_request("s", {"width": "200", "height": "100", "fill": "red"}, settings)
    assert boxed.fill == "#ff0000ff"
    # Neither side: large_image's 256 x 256 default, so the fill applies.
    assert parse_thumbnail_request("s", {"fill": "red"}, settings).fill == "#ff0000ff"
    assert parse_thumbnail_request("s", {"width": "200", "fill": "red"}, settings).fill is None
