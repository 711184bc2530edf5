"""DICOMweb under the ``girder`` access mode (api/protocols/dicomweb_routes.py): a study's
routes are its source's item routes, checked with the request's Girder token; the
searches over every study need the plugin's secret or an administrator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient

from tests.unit.fakes import METADATA
from tests.unit.test_api_access import FakeGirder, girder_url  # noqa: F401 (a fixture)
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION
from tilecast.common import dicomuids
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings

ITEM = "0123456789abcdef0123cafe"


@pytest.fixture
def client(settings: Settings, state: redis.Redis, girder_url: str) -> Iterator[FlaskClient]:  # noqa: F811
    configured = replace(settings, access_mode="girder", girder_url=girder_url, girder_secret="s")
    SourceRegistry(state).remove(ITEM)
    SourceRegistry(state).add(SourceRecord(ITEM, "girder://item/x", "a.svs", dict(METADATA)))
    app = create_app(configured)
    yield app.test_client()
    app.extensions[EXTENSION].listener.stop()
    SourceRegistry(state).remove(ITEM)


def test_study_routes_are_checked_as_the_item(client: FlaskClient, state: redis.Redis) -> None:
    generation = SourceRegistry(state).generation(ITEM)
    assert generation is not None
    series = f"/dicomweb/studies/{dicomuids.study_uid(ITEM, generation)}/series"
    assert client.get(series, headers={"Girder-Token": "ok"}).status_code == 200
    assert client.get(series, headers={"Girder-Token": "other"}).status_code == 403
    assert client.get(series).status_code == 401
    assert client.get(series + "?token=ok").status_code == 200


def test_searching_every_study_needs_management_rights(client: FlaskClient) -> None:
    assert client.get("/dicomweb/studies", headers={"Girder-Token": "ok"}).status_code == 403
    assert client.get("/dicomweb/series").status_code == 401
    admin = client.get("/dicomweb/instances", headers={"Girder-Token": "admin"})
    assert admin.status_code == 200
    assert client.get("/dicomweb/studies", headers={"Tilecast-Secret": "s"}).status_code == 200
    # Still a read route for CORS: any origin may read what it is allowed to.
    answer = client.get(
        "/dicomweb/studies", headers={"Tilecast-Secret": "s", "Origin": "http://viewer.example"}
    )
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_a_record_dicomweb_cannot_describe_is_left_out_of_the_searches() -> None:
    from tilecast.api.protocols.dicomweb import _describable
    from tilecast.common.registry import SourceRecord

    odd = SourceRecord("odd", "/x.tiff", "x.tiff", {"sizeX": 10})
    good = SourceRecord("good", "/y.tiff", "y.tiff",
                        {"sizeX": 512, "sizeY": 512, "tileWidth": 256, "tileHeight": 256,
                         "levels": 2})  # fmt: skip
    assert _describable(odd, 1) is None
    slide = _describable(good, 1)
    assert slide is not None and slide.grid.levels == 2
