"""The ``signed`` access mode in-process (Flask test client, real Redis, fake worker):
which routes need which grant, the refusals, caching headers, ETag/304, and the
``tilecast sign`` command's URLs."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common import signing
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.sign import signed_url

KEYS_TEXT = "new:new-secret-9876543210,old:old-secret-0123456789"
KEYS = signing.parse_keys(KEYS_TEXT)
OLD = {"old": KEYS["old"]}


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(
        replace(settings, render_timeout=5.0, access_mode="signed", signing_keys=KEYS_TEXT)
    )
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


def grant(prefix: str, lifetime: int = 600, keys: dict[str, bytes] = KEYS) -> dict[str, str]:
    return signing.sign(prefix, int(time.time()) + lifetime, keys)


def test_a_grant_of_the_item_opens_every_route_of_it(client: FlaskClient, source: str) -> None:
    query = grant(f"/item/{source}/")
    for path in (
        f"/item/{source}/tiles",
        f"/item/{source}/tiles/zxy/0/0/0",
        f"/api/v1/item/{source}/tiles/zxy/0/0/0",
        f"/item/{source}/tiles/dzi.dzi",
        f"/item/{source}/tiles/tilejson.json",
        f"/iiif/{source}/info.json",
    ):
        response = client.get(path, query_string=query)
        assert response.status_code == 200, (path, response.get_json())


def test_refusals_name_what_is_wrong(client: FlaskClient, source: str) -> None:
    path = f"/item/{source}/tiles/zxy/0/0/0"
    cases = {
        "no signature": ({}, 401, "needs signed URLs"),
        "wrong signature": ({**grant(f"/item/{source}/"), "signature": "x" * 43}, 403, "wrong"),
        "wrong prefix": (grant(f"/item/{source}/iiif/"), 403, "covers"),
        "other item": (grant(f"/item/{uuid.uuid4().hex[:24]}/"), 403, "covers"),
        "expired": (grant(f"/item/{source}/", lifetime=-1), 403, "expired"),
        "unknown key": (grant(f"/item/{source}/", keys={"gone": b"x" * 20}), 403, "unknown"),
    }
    for name, (query, status, words) in cases.items():
        response = client.get(path, query_string=query)
        assert response.status_code == status, name
        assert words in response.get_json()["message"], name


def test_rotation_old_key_still_verifies(client: FlaskClient, source: str) -> None:
    response = client.get(f"/item/{source}/tiles", query_string=grant(f"/item/{source}/", keys=OLD))
    assert response.status_code == 200


def test_management_needs_a_management_grant(client: FlaskClient, source: str) -> None:
    item_grant = grant(f"/item/{source}/")
    assert client.get("/sources").status_code == 401
    assert client.get("/sources", query_string=item_grant).status_code == 403
    precache = f"/item/{source}/tiles/precache"
    assert client.post(precache, json={}, query_string=item_grant).status_code == 403
    assert client.get("/sources", query_string=grant("/manage/")).status_code == 200
    assert client.get("/jobs", query_string=grant("/manage/sources/")).status_code == 403


def test_service_routes_stay_open(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_encoded_path_tricks_are_refused(client: FlaskClient, source: str) -> None:
    query = grant(f"/item/{source}/")
    response = client.get(
        f"/item/{source}/tiles/zxy/0/0/0",
        query_string=query,
        environ_overrides={"RAW_URI": f"/item/{source}/tiles/zxy/0/%2e/0"},
    )
    assert response.status_code == 400


def test_max_age_ends_with_the_grant_and_etags_still_work(
    app: Flask, client: FlaskClient, source: str
) -> None:
    query = grant(f"/item/{source}/", lifetime=120)
    first = client.get(f"/item/{source}/tiles/zxy/1/0/0", query_string=query)
    assert first.status_code == 200
    scope, max_age = first.headers["Cache-Control"].split(", ")
    assert scope == "private" and 0 < int(max_age.removeprefix("max-age=")) <= 120
    # Another grant of the same tile: the same ETag (signatures are not in the key), a 304.
    again = client.get(
        f"/item/{source}/tiles/zxy/1/0/0",
        query_string=grant(f"/item/{source}/tiles/", keys=OLD),
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304
    assert len(services(app).sender.sent) == 1  # type: ignore[attr-defined]


def test_the_sign_command_prints_a_url_the_api_accepts(
    client: FlaskClient, settings: Settings, source: str
) -> None:
    args = argparse.Namespace(
        item_id=source, prefix=None, expires_in=300, url="http://tiles.example", in_path=False
    )
    url = urlsplit(signed_url(args, replace(settings, signing_keys=KEYS_TEXT)))
    assert (url.netloc, url.path) == ("tiles.example", f"/viewer/{source}")
    query = dict(parse_qsl(url.query))
    assert query["keyid"] == "new" and query["prefix"] == f"/item/{source}/"
    assert client.get(f"/item/{source}/tiles", query_string=query).status_code == 200


def path_grant(lifetime: int = 600, keys: dict[str, bytes] = KEYS, prefix: str = "") -> str:
    query = grant(prefix, lifetime, keys)
    return f"/signed/{query['keyid']}/{query['expires']}/{query['signature']}"


def test_the_path_form_grants_the_whole_item_and_urls_carry_it(
    client: FlaskClient, source: str
) -> None:
    signed = path_grant(prefix=f"/item/{source}/")
    info = client.get(f"{signed}/iiif/{source}/info.json")
    assert info.status_code == 200
    # IIIF clients append to the id: the grant rides along.
    assert info.get_json()["id"] == f"http://localhost{signed}/iiif/{source}"
    assert client.get(f"{signed}/iiif/{source}/0,0,256,256/256,/0/default.jpg").status_code == 200
    assert client.get(f"{signed}/item/{source}/tiles/zxy/0/0/0").status_code == 200
    # A path grant of a part is not a grant of the item; another item's is refused.
    part = path_grant(prefix=f"/item/{source}/tiles/")
    assert client.get(f"{part}/item/{source}/tiles/zxy/0/0/0").status_code == 403
    other = path_grant(prefix=f"/item/{uuid.uuid4().hex[:24]}/")
    assert client.get(f"{other}/item/{source}/tiles").status_code == 403
    expired = path_grant(lifetime=-1, prefix=f"/item/{source}/")
    assert client.get(f"{expired}/item/{source}/tiles").status_code == 403
    assert client.get(f"{path_grant(prefix='/manage/')}/sources").status_code == 200


def test_tilejson_templates_carry_the_grant(client: FlaskClient, source: str) -> None:
    query = grant(f"/item/{source}/")
    document = client.get(f"/item/{source}/tiles/tilejson.json", query_string=query).get_json()
    template = urlsplit(document["tiles"][0])
    assert dict(parse_qsl(template.query)) == query


def test_the_sign_command_path_form(client: FlaskClient, settings: Settings, source: str) -> None:
    args = argparse.Namespace(item_id=source, prefix=None, expires_in=300, url="", in_path=True)
    url = signed_url(args, replace(settings, signing_keys=KEYS_TEXT))
    assert url.startswith("/signed/new/") and url.endswith(f"/viewer/{source}")
    assert client.get(url.replace("/viewer/", "/item/") + "/tiles").status_code == 200


def test_the_viewer_page_needs_the_item_grant(client: FlaskClient, source: str) -> None:
    assert client.get(f"/viewer/{source}").status_code == 401
    assert (
        client.get(f"/viewer/{source}", query_string=grant(f"/item/{source}/tiles/")).status_code
        == 403
    )
    for prefix in (f"/item/{source}/", "/"):  # the item's grant, or everything
        page = client.get(f"/viewer/{source}", query_string=grant(prefix))
        assert page.status_code not in (401, 403)


def test_versioned_urls_are_not_cached_past_the_grant(client: FlaskClient, source: str) -> None:
    query = grant(f"/item/{source}/", lifetime=120)
    first = client.get(f"/item/{source}/tiles/zxy/0/0/0", query_string=query)
    generation = first.headers["X-Tilecast-Generation"]
    versioned = client.get(
        f"/item/{source}/tiles/zxy/0/0/0", query_string={**query, "gen": generation}
    )
    scope, max_age, immutable = versioned.headers["Cache-Control"].split(", ")
    assert (scope, immutable) == ("private", "immutable")
    assert 0 < int(max_age.removeprefix("max-age=")) <= 120
