"""Malformed requests are 4xx on every endpoint (issue 14): deeply nested JSON in any
body or in the ``style`` parameter, enumerated from the app's url_map so that a new
endpoint is covered without touching this file."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.openapi import doc_of
from tilecast.api.protocols.dzi import Layout, largest_tile
from tilecast.api.services import EXTENSION
from tilecast.common.errors import BadRequest, ConfigurationError
from tilecast.common.girder import SECRET_HEADER
from tilecast.common.params import MAX_JSON_DEPTH, json_depth_within, loads_json
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings

SECRET = "edge-secret"
NESTED = ("[" * 1000, '{"a":' * 1000, "[" * 40 + "]" * 40, '{"a":' * 40 + "1" + "}" * 40)
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# A value each URL variable's converter and parser accepts, so that the request reaches
# the code that reads the body or the style.
SEGMENTS = {
    "z": "0",
    "x": "0",
    "y": "0",
    "frame": "0",
    "level": "0",
    "xandy": "0_0.jpg",
    "name": "label",
    "region": "full",
    "size": "max",
    "rotation": "0",
    "quality_format": "default.jpg",
    "filename": "x.js",
}


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=5.0, girder_secret=SECRET))
    app.extensions[EXTENSION].sender = FakeSender(state)
    yield app
    app.extensions[EXTENSION].listener.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def path_of(rule: Rule, item: str) -> str:
    values = {name: SEGMENTS.get(name, item) for name in rule.arguments}
    return re.sub(r"<(?:[^>:]+:)?([^>]+)>", lambda m: values[m.group(1)], rule.rule)


def test_depth_is_measured_outside_strings() -> None:
    assert json_depth_within('{"a": "[[[[[[[[[["}', 1)
    assert json_depth_within('["\\"[[[[", 1]', 1)
    assert not json_depth_within("[[1]]", 1)
    assert json_depth_within("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, MAX_JSON_DEPTH)
    assert loads_json(b'{"a": [1, {"b": "]]]"}]}', "body") == {"a": [1, {"b": "]]]"}]}
    with pytest.raises(BadRequest) as caught:
        loads_json("[" * 100_000, "body")
    assert caught.value.parameter == "body"


def test_every_endpoint_taking_a_body_refuses_nested_json(
    app: Flask, client: FlaskClient, source: str
) -> None:
    documented = 0
    for rule in app.url_map.iter_rules():
        for method in sorted(set(rule.methods or ()) & set(BODY_METHODS)):
            takes_body = doc_of(app.view_functions[rule.endpoint]).body is not None
            documented += takes_body
            for body in NESTED:
                response = client.open(
                    path_of(rule, source),
                    method=method,
                    data=body,
                    content_type="application/json",
                    headers={SECRET_HEADER: SECRET},
                )
                where = f"{method} {rule.rule} with {body[:12]}..."
                # Routes that read no body (DELETE) ignore it; none may fail on it.
                assert response.status_code < 500, (where, response.data)
                if takes_body:
                    assert response.status_code == 400, where
                    assert response.get_json()["parameter"] == "body", where
    # POST /sources, precache, the Girder plugin's call (and any added since).
    assert documented >= 3


def test_every_endpoint_taking_a_style_refuses_nested_json(
    app: Flask, client: FlaskClient, source: str
) -> None:
    covered = []
    for rule in app.url_map.iter_rules():
        doc = doc_of(app.view_functions[rule.endpoint])
        if "GET" not in (rule.methods or ()) or "style" not in {p.name for p in doc.query}:
            continue
        if "text/html" in doc.produces:
            continue  # the viewer page hands its style to its tile requests, which refuse it
        for style in NESTED:
            response = client.get(path_of(rule, source), query_string={"style": style})
            where = f"GET {rule.rule} with style {style[:12]}..."
            assert response.status_code == 400, (where, response.data)
            assert response.get_json()["parameter"] == "style", where
        covered.append(rule.rule)
    assert "/item/<item_id>/tiles/zxy/<z>/<x>/<y>" in covered
    assert "/item/<item_id>/tiles/dzi.dzi" in covered
    assert len(covered) >= 8, covered


def test_a_body_within_the_bound_still_parses(client: FlaskClient) -> None:
    body = json.dumps({"path": "/nowhere/a.tiff", "x": [[[["deep but fine"]]]]})
    response = client.post("/sources", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "source_refused"


# --- the Deep Zoom descriptor refuses what its tiles refuse ------------------------------

# Parameters a DZI tile refuses; the descriptor announcing those tiles must too.
BAD_DZI = [
    ({"style": "{not json"}, "style"),
    ({"style": '{"min": "nope"}'}, "style"),
    ({"encoding": "GIF"}, "encoding"),
    ({"jpegQuality": "500"}, "jpegQuality"),
    ({"frame": "x"}, "frame"),
    ({"frame": "3"}, "frame"),  # the image has one frame
    ({"tilesize": "3"}, "tilesize"),
    ({"tilesize": "0"}, "tilesize"),
    ({"tilesize": "256", "overlap": "257"}, "overlap"),
    ({"tilesize": "512"}, "tilesize"),  # 512 x 512 is past the region bound below
    ({"tilesize": "128", "overlap": "100"}, "overlap"),  # 328 x 328 is too
]


@pytest.fixture
def small_regions(settings: Settings, state: redis.Redis) -> Iterator[FlaskClient]:
    app = create_app(replace(settings, render_timeout=5.0, max_region_pixels=300 * 300))
    app.extensions[EXTENSION].sender = FakeSender(state)
    yield app.test_client()
    app.extensions[EXTENSION].listener.stop()


@pytest.mark.parametrize(("args", "parameter"), BAD_DZI)
def test_the_descriptor_refuses_what_its_tiles_refuse(
    small_regions: FlaskClient, source: str, args: dict[str, str], parameter: str
) -> None:
    tile = small_regions.get(f"/item/{source}/tiles/dzi_files/10/1_1.jpg", query_string=args)
    assert tile.status_code == 400, tile.data
    descriptor = small_regions.get(f"/item/{source}/tiles/dzi.dzi", query_string=args)
    assert descriptor.status_code == 400, descriptor.data
    assert descriptor.get_json()["parameter"] == parameter


def test_the_descriptor_refuses_a_style_reading_a_missing_frame(
    client: FlaskClient, source: str
) -> None:
    style = json.dumps({"bands": [{"band": 1, "frame": 4}]})
    response = client.get(f"/item/{source}/tiles/dzi.dzi", query_string={"style": style})
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "style"
    assert "frame 4" in response.get_json()["message"]


@pytest.mark.parametrize(
    "args", [{}, {"tilesize": "256"}, {"tilesize": "128", "overlap": "64"}, {"frame": "0"}]
)
def test_the_descriptor_serves_what_its_tiles_serve(
    small_regions: FlaskClient, source: str, args: dict[str, str]
) -> None:
    descriptor = small_regions.get(f"/item/{source}/tiles/dzi.dzi", query_string=args)
    assert descriptor.status_code == 200, descriptor.data
    if args.get("overlap"):
        return  # a region: this test's stand-in worker renders tiles only
    tile = small_regions.get(f"/item/{source}/tiles/dzi_files/10/1_1.jpg", query_string=args)
    assert tile.status_code == 200, tile.data


@pytest.mark.parametrize("extent", [1, 5, 255, 256, 257, 700, 1000, 4097])
@pytest.mark.parametrize(("size", "overlap"), [(1, 0), (1, 1), (2, 1), (64, 3), (256, 0),
                                               (256, 256), (128, 100), (4096, 4096)])  # fmt: skip
def test_largest_tile_is_the_largest_of_every_tile(extent: int, size: int, overlap: int) -> None:
    layout = Layout(size, overlap)
    spans = [
        min(extent, (i + 1) * size + overlap) - max(0, i * size - overlap)
        for i in range(-(-extent // size))
    ]
    assert largest_tile(layout, extent, 1) == (max(spans), 1)


# --- absolute URLs: the public base URL, else a well-formed Host -------------------------


def absolute_urls(client: FlaskClient, source: str, **kwargs: Any) -> list[str]:
    """The IIIF id, the /iiif/{id} redirect and TileJSON's tile template."""
    info = client.get(f"/iiif/{source}/info.json", **kwargs)
    assert info.status_code == 200, info.data
    redirect = client.get(f"/iiif/{source}", **kwargs)
    assert redirect.status_code == 303
    tilejson = client.get(f"/item/{source}/tiles/tilejson.json", **kwargs)
    assert tilejson.status_code == 200, tilejson.data
    return [info.get_json()["id"], redirect.headers["Location"], tilejson.get_json()["tiles"][0]]


@pytest.fixture
def public_client(settings: Settings, state: redis.Redis) -> Iterator[Callable[..., FlaskClient]]:
    """A client of an app made with these settings changed."""
    apps: list[Flask] = []

    def make(**changes: Any) -> FlaskClient:
        apps.append(create_app(replace(settings, **changes)))
        apps[-1].extensions[EXTENSION].sender = FakeSender(state)
        return apps[-1].test_client()

    yield make
    for app in apps:
        app.extensions[EXTENSION].listener.stop()


def test_without_a_public_url_a_well_formed_host_is_used(client: FlaskClient, source: str) -> None:
    urls = absolute_urls(client, source, headers={"Host": "tiles.example.org:8080"})
    assert urls == [
        f"http://tiles.example.org:8080/iiif/{source}",
        f"http://tiles.example.org:8080/iiif/{source}/info.json",
        f"http://tiles.example.org:8080/item/{source}/tiles/zxy/{{z}}/{{x}}/{{y}}",
    ]
    assert absolute_urls(client, source, headers={"Host": "[::1]:9"})[0].startswith(
        "http://[::1]:9/"
    )


@pytest.mark.parametrize(
    "host", ["evil.example/x?", "a b", "evil.example@x", "<script>", "x:99999999", "-a.b"]
)
def test_a_malformed_host_is_a_400_never_a_url(client: FlaskClient, source: str, host: str) -> None:
    for path in (f"/iiif/{source}/info.json", f"/iiif/{source}", f"/item/{source}/tiles"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400, (path, host, response.data)
        assert response.get_json()["parameter"] == "Host"


def test_forwarded_headers_count_only_from_trusted_proxies(
    public_client: Callable[..., FlaskClient], client: FlaskClient, source: str
) -> None:
    forwarded = {
        "Host": "internal:8000",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "spoofed.example, public.example",
        "X-Forwarded-Prefix": "/tiles",
    }
    untrusted = absolute_urls(client, source, headers=forwarded)
    assert all(url.startswith("http://internal:8000/iiif/") for url in untrusted[:2]), untrusted
    trusting = public_client(trusted_proxies="127.0.0.1/32")
    urls = absolute_urls(trusting, source, headers=forwarded)
    assert urls[0] == f"https://public.example/tiles/iiif/{source}"
    assert urls[2] == f"https://public.example/tiles/item/{source}/tiles/zxy/{{z}}/{{x}}/{{y}}"
    # A malformed forwarded value is ignored, not pasted.
    bad = {**forwarded, "X-Forwarded-Host": "a b", "X-Forwarded-Proto": "javascript"}
    assert (
        absolute_urls(trusting, source, headers=bad)[0]
        == f"http://internal:8000/tiles/iiif/{source}"
    )


def test_the_public_url_wins_over_host_and_forwarded_headers(
    public_client: Callable[..., FlaskClient], source: str
) -> None:
    client = public_client(public_url="https://tiles.example.org/pre/", trusted_proxies="127.0.0.1")
    headers = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"}
    assert absolute_urls(client, source, headers=headers) == [
        f"https://tiles.example.org/pre/iiif/{source}",
        f"https://tiles.example.org/pre/iiif/{source}/info.json",
        f"https://tiles.example.org/pre/item/{source}/tiles/zxy/{{z}}/{{x}}/{{y}}",
    ]
    # Routes still match the request's own path; only the URLs written change.
    assert client.get(f"/item/{source}/tiles", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "url", ["tiles.example.org", "ftp://x.example", "https://x.example/?a=1", "https://a b/"]
)
def test_a_malformed_public_url_is_refused_at_start(settings: Settings, url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_app(replace(settings, public_url=url))
