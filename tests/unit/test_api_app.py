"""The api in-process (Flask test client) against a real Redis and a fake worker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.workers_live import ROLE_INTERACTIVE, WorkerInfo, heartbeat, unregister


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0))
    services(app).sender = FakeSender(state)
    yield app
    services(app).listener.stop()


def services(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def sender(app: Flask) -> FakeSender:
    return services(app).sender  # type: ignore[return-value]


def test_metadata_is_the_registered_metadata(client: FlaskClient, source: str) -> None:
    response = client.get(f"/item/{source}/tiles")
    assert response.status_code == 200
    assert response.get_json() == METADATA


def test_miss_renders_once_then_hits(app: Flask, client: FlaskClient, source: str) -> None:
    first = client.get(f"/item/{source}/tiles/zxy/2/1/1")
    assert first.status_code == 200
    assert first.content_type == "image/jpeg"
    assert first.data.startswith(b"\xff\xd8fake:tc:tile:")
    assert first.headers["Cache-Control"] == "public, max-age=86400"
    second = client.get(f"/item/{source}/tiles/zxy/2/1/1")
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert len(sender(app).sent) == 1
    name, payload, queue = sender(app).sent[0]
    assert (name, queue) == ("tilecast.render_tile", "interactive")
    assert payload["request"]["z"] == 2 and payload["generation"] >= 1


def test_if_none_match_answers_304_without_reading(
    app: Flask, client: FlaskClient, source: str
) -> None:
    etag = client.get(f"/item/{source}/tiles/zxy/1/0/0").headers["ETag"]
    assert etag.startswith('"')  # strong
    # Drop the cached tile: a 304 must come from the key alone, with no render.
    cache = services(app).cache.client
    cache.delete(*cache.keys(f"tc:tile:{source}:*"))
    response = client.get(f"/item/{source}/tiles/zxy/1/0/0", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert len(sender(app).sent) == 1
    other = client.get(f"/item/{source}/tiles/zxy/1/0/0", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200


def test_encodings_change_key_and_content_type(client: FlaskClient, source: str) -> None:
    png = client.get(f"/item/{source}/tiles/zxy/0/0/0?encoding=PNG")
    jpeg = client.get(f"/item/{source}/tiles/zxy/0/0/0?encoding=JPEG&jpegQuality=80")
    assert png.content_type == "image/png"
    assert jpeg.content_type == "image/jpeg"
    assert png.headers["ETag"] != jpeg.headers["ETag"]


def test_equivalent_styles_share_one_key(app: Flask, client: FlaskClient, source: str) -> None:
    a = json.dumps({"min": 0, "max": 200, "palette": ["#000", "#fff"]})
    b = '{ "palette" : ["#000","#fff"], "max": 200, "min": 0 }'
    first = client.get(f"/item/{source}/tiles/zxy/0/0/0", query_string={"style": a})
    second = client.get(f"/item/{source}/tiles/zxy/0/0/0", query_string={"style": b})
    assert first.headers["ETag"] == second.headers["ETag"]
    assert len(sender(app).sent) == 1


def test_concurrent_askers_cause_one_render(app: Flask, source: str) -> None:
    sender(app).delay = 0.3
    results: list[bytes] = []

    def ask() -> None:
        response = app.test_client().get(f"/item/{source}/tiles/zxy/2/3/2?encoding=PNG")
        assert response.status_code == 200
        results.append(response.data)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20 and len(set(results)) == 1
    assert len(sender(app).sent) == 1


def test_worker_error_maps_to_its_status(app: Flask, client: FlaskClient, source: str) -> None:
    sender(app).fail_with = {"error": "unsupported_image", "message": "corrupt tile data"}
    response = client.get(f"/item/{source}/tiles/zxy/2/0/0")
    assert response.status_code == 422
    assert response.get_json() == {"error": "unsupported_image", "message": "corrupt tile data"}


def test_lost_render_times_out_with_retry_after(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    app = create_app(replace(settings, render_timeout=1.0))
    fake = FakeSender(state)
    fake.silent = True
    services(app).sender = fake
    try:
        response = app.test_client().get(f"/item/{source}/tiles/zxy/2/2/2?jpegQuality=11")
    finally:
        services(app).listener.stop()
    assert response.status_code == 504
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"] == "render_timeout"


def test_out_of_range_is_checked_on_the_miss_path(app: Flask, client: FlaskClient, source: str):
    for path, parameter in [("3/0/0", "z"), ("2/4/0", "x"), ("2/0/3", "y"), ("0/1/0", "x")]:
        response = client.get(f"/item/{source}/tiles/zxy/{path}")
        assert response.status_code == 404, path
        assert response.get_json()["error"] == "tile_out_of_range"
        assert response.get_json()["parameter"] == parameter
    frame = client.get(f"/item/{source}/tiles/zxy/0/0/0?frame=1")
    assert frame.status_code == 400 and frame.get_json()["parameter"] == "frame"
    assert sender(app).sent == []


def test_unknown_item_is_404(client: FlaskClient) -> None:
    for path in ["/tiles", "/tiles/zxy/0/0/0", "/tiles/thumbnail"]:
        response = client.get(f"/item/{'0' * 24}{path}")
        assert response.status_code == 404, path
        assert response.get_json()["error"] == "unknown_source"


def test_thumbnail_defaults_and_payload(app: Flask, client: FlaskClient, source: str) -> None:
    response = client.get(f"/item/{source}/tiles/thumbnail?encoding=PNG")
    assert response.status_code == 200 and response.content_type == "image/png"
    name, payload, _queue = sender(app).sent[0]
    assert name == "tilecast.render_thumbnail"
    assert (payload["request"]["width"], payload["request"]["height"]) == (256, 256)
    client.get(f"/item/{source}/tiles/thumbnail?width=100")
    assert sender(app).sent[1][1]["request"]["height"] == 0


def test_generation_bump_retires_tiles(app: Flask, client: FlaskClient, source: str) -> None:
    services(app).generations.ttl = 0  # see the bump at once
    first = client.get(f"/item/{source}/tiles/zxy/0/0/0")
    SourceRegistry(services(app).state).bump_generation(source)
    second = client.get(f"/item/{source}/tiles/zxy/0/0/0")
    assert first.headers["ETag"] != second.headers["ETag"]
    assert len(sender(app).sent) == 2


def test_register_source_describes_once(app: Flask, client: FlaskClient, source_root: Path) -> None:
    path = source_root / f"{uuid.uuid4().hex}.tiff"
    path.write_bytes(b"II*\x00")
    created = client.post("/sources", json={"path": str(path)})
    assert created.status_code == 201
    again = client.post("/sources", json={"path": str(path)})
    assert again.status_code == 200
    assert again.get_json()["id"] == created.get_json()["id"]
    assert [name for name, _p, _q in sender(app).sent] == ["tilecast.describe_source"]
    listed = client.get("/sources").get_json()
    assert created.get_json()["id"] in {entry["id"] for entry in listed}


def test_register_unsupported_file_is_422(client: FlaskClient, source_root: Path) -> None:
    path = source_root / f"{uuid.uuid4().hex}.txt"
    path.write_text("not an image")
    response = client.post("/sources", json={"path": str(path)})
    assert response.status_code == 422
    assert response.get_json()["error"] == "unsupported_image"


def test_register_refuses_paths_outside_roots(client: FlaskClient, tmp_path: Path) -> None:
    outside = tmp_path / "a.tiff"
    outside.write_bytes(b"x")
    for body in [{"path": str(outside)}, {"path": "/etc/passwd"}, {"path": ""}, {}, [1]]:
        response = client.post("/sources", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["parameter"] == "path"
    not_json = client.post("/sources", data="path=/x", content_type="text/plain")
    assert not_json.status_code == 400


def test_health_and_readiness(client: FlaskClient, state: redis.Redis) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    worker = WorkerInfo(
        node="interactive-app@test", role=ROLE_INTERACTIVE, queue=None, host="test", pid=1,
        concurrency=1, started=time.time(),
    )  # fmt: skip
    heartbeat(state, worker, ttl=30)
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        unregister(state, worker.node, time.time())
    # Not ready without a live worker: tests/unit/test_api_health.py, in a database of
    # its own (other tests' workers heartbeat in this one).


def test_hit_path_is_one_redis_round_trip(
    app: Flask, client: FlaskClient, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/item/{source}/tiles/zxy/2/2/2"
    assert client.get(path).status_code == 200  # warm the cache and the generation memo
    commands: list[str] = []
    svc = services(app)
    for conn in {id(svc.cache.client): svc.cache.client, id(svc.state): svc.state}.values():
        original = conn.execute_command

        def counting(*args: object, _original=original, **kwargs: object) -> object:
            commands.append(str(args[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(conn, "execute_command", counting)
    etag = client.get(path).headers["ETag"]
    assert commands == ["GET"]
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert commands == ["GET"]  # a 304 needs no round trip at all
