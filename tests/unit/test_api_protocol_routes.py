"""The Deep Zoom, IIIF and TileJSON routes are item routes like the others: the girder
access mode's check (api/middleware/access.py reads the ``item_id`` URL variable) runs
before them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port

PROTOCOL_BLUEPRINTS = {"dzi", "iiif", "tilejson", "girder_api_dzi", "girder_api_tilejson"}
PATHS = [
    "/item/{item}/tiles/dzi.dzi",
    "/item/{item}/tiles/dzi_files/10/0_0.jpg",
    "/api/v1/item/{item}/tiles/dzi_files/10/0_0.jpg",
    "/item/{item}/tiles/tilejson.json",
    "/iiif/{item}",
    "/iiif/{item}/info.json",
    "/iiif/{item}/full/max/0/default.jpg",
]
ITEM = "0123456789abcdef01234567"


def test_every_protocol_route_names_the_item(settings: Settings) -> None:
    app = create_app(settings)
    rules = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in PROTOCOL_BLUEPRINTS
    ]
    assert len(rules) == 9  # 2 dzi, 3 iiif, 1 tilejson; dzi and tilejson under /api/v1
    for rule in rules:
        assert "item_id" in rule.arguments, rule.rule


@pytest.mark.parametrize("path", PATHS)
def test_girder_mode_checks_access_first(settings: Settings, path: str) -> None:
    """Nobody answers at the Girder URL: the access check's 503, not the view's 404."""
    unreachable = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    girder = replace(settings, access_mode="girder", girder_url=unreachable, girder_timeout=2.0)
    client = create_app(girder.resolved()).test_client()
    response = client.get(path.format(item=ITEM))
    assert response.status_code == 503
    assert response.headers["Retry-After"]


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0))
    app.extensions[EXTENSION].sender = FakeSender(state)
    yield app
    app.extensions[EXTENSION].listener.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/item/{item}/tiles/dzi_files/10/1_1.jpg",  # 1000 x 700: level 10 is full resolution
        "/api/v1/item/{item}/tiles/dzi_files/10/1_1",
        "/iiif/{item}/256,256,256,256/256,256/0/default.jpg",
    ],
)
def test_a_protocol_tile_hit_is_the_zxy_hit_one_round_trip(
    app: Flask, state: redis.Redis, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(item, "/x/a.tiff", "a.tiff", dict(METADATA)))
    client = app.test_client()
    zxy = client.get(f"/item/{item}/tiles/zxy/2/1/1")
    assert zxy.status_code == 200
    first = client.get(path.format(item=item))  # remembers the image's grid
    assert first.headers["ETag"] == zxy.headers["ETag"]
    svc: Services = app.extensions[EXTENSION]
    commands: list[str] = []
    for conn in {id(svc.cache.client): svc.cache.client, id(svc.state): svc.state}.values():
        original = conn.execute_command

        def counting(*args: object, _original=original, **kwargs: object) -> object:
            commands.append(str(args[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(conn, "execute_command", counting)
    again = client.get(path.format(item=item))
    assert again.status_code == 200 and again.headers["X-Tilecast-Cache"] == "hit"
    assert again.data == zxy.data
    assert commands == ["GET"]
