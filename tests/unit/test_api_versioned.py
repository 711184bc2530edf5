"""gen=<generation> image URLs are immutable; other answers keep the usual max-age."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services, cache_control
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings

YEAR = "max-age=31536000, immutable"


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0, http_max_age=600))
    svc: Services = app.extensions[EXTENSION]
    svc.sender = FakeSender(state)
    yield app
    svc.listener.stop()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def test_the_current_generation_makes_a_tile_immutable(app: Flask, source: str) -> None:
    client = app.test_client()
    meta = client.get(f"/item/{source}/tiles")
    generation = meta.headers["X-Tilecast-Generation"]
    plain = client.get(f"/item/{source}/tiles/zxy/0/0/0")
    assert plain.status_code == 200
    assert plain.headers["Cache-Control"] == "public, max-age=600"
    assert plain.headers["X-Tilecast-Generation"] == generation
    versioned = client.get(f"/item/{source}/tiles/zxy/0/0/0?gen={generation}")
    assert versioned.headers["Cache-Control"] == f"public, {YEAR}"
    assert versioned.headers["ETag"] == plain.headers["ETag"]  # one cached rendering
    assert versioned.headers["X-Tilecast-Cache"] == "hit"
    revalidated = client.get(
        f"/item/{source}/tiles/zxy/0/0/0?gen={generation}",
        headers={"If-None-Match": plain.headers["ETag"]},
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["Cache-Control"] == f"public, {YEAR}"
    stale = client.get(f"/item/{source}/tiles/zxy/0/0/0?gen={int(generation) + 7}")
    assert stale.headers["Cache-Control"] == "public, max-age=600"
    assert "immutable" not in meta.headers.get("Cache-Control", "")


def test_errors_and_unknown_items_are_never_versioned(app: Flask) -> None:
    response = app.test_client().get("/item/nothing/tiles/zxy/0/0/0?gen=1")
    assert response.status_code == 404
    assert "X-Tilecast-Generation" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_behind_an_access_check_tiles_stay_private() -> None:
    assert cache_control(600, "girder") == "private, max-age=600"
    assert cache_control(600, "open") == "public, max-age=600"


def test_an_older_generation_is_gone(app: Flask, source: str, state: redis.Redis) -> None:
    client = app.test_client()
    old = client.get(f"/item/{source}/tiles").headers["X-Tilecast-Generation"]
    SourceRegistry(state).bump_generation(source)  # the file changed
    app.extensions[EXTENSION].generations.forget(source)
    gone = client.get(f"/item/{source}/tiles/zxy/0/0/0?gen={old}")
    assert gone.status_code == 404 and gone.json["error"] == "generation_gone"
    assert client.get(f"/item/{source}/tiles?gen={old}").status_code == 200  # metadata
    current = client.get(f"/item/{source}/tiles/zxy/0/0/0?gen={int(old) + 1}")
    assert current.status_code == 200 and "immutable" in current.headers["Cache-Control"]
