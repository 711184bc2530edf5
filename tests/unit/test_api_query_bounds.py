"""The bounds ``/openapi.json`` states are the bounds the parsers enforce, under the
server's own settings: for every integer query parameter of every GET operation, one
past either declared end is a 400 naming the parameter (the parser's bound message),
and the end itself passes the parser. And the document states access as it is
enforced: credentials and 401/403 where the access mode checks them, 413/414/429."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.unit.fakes import METADATA
from tilecast.api import openapi
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION
from tilecast.common import dicomuids
from tilecast.common.errors import ServiceUnavailable
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings

# Bounds a deployment sets, away from their defaults: the document must follow them.
MAX_THUMBNAIL_SIZE = 1024
JPEG_QUALITY = 90
# A value each path variable's parser accepts, so the request reaches the query's.
SEGMENTS = {
    "z": "0",
    "x": "0",
    "y": "0",
    "frame": "0",
    "level": "0",
    "xandy": "0_0.jpg",
    "name": "label",
}
TILE = "/item/{item_id}/tiles/zxy/{z}/{x}/{y}"


class RefusingSender:
    """Refuses every render at once: a request the parsers accepted ends there, in a
    503, without waiting for a render that only the parsers' answer is asked of."""

    def send(self, name: str, payload: dict[str, Any], queue: str = "interactive") -> object:
        raise ServiceUnavailable("no renders in this test")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    configured = replace(settings, max_thumbnail_size=MAX_THUMBNAIL_SIZE, jpeg_quality=JPEG_QUALITY)
    app = create_app(configured)
    app.extensions[EXTENSION].sender = RefusingSender()
    yield app
    app.extensions[EXTENSION].listener.stop()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def bounded_integers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, parameter)`` of every bounded integer query parameter of a GET."""
    for path, item in spec["paths"].items():
        if path.startswith("/api/v1/"):
            continue  # the same views again, under Girder's API root
        for param in item.get("get", {}).get("parameters", []):
            if param["in"] == "query" and param["schema"]["type"] == "integer":
                yield path, param


def url_of(path: str, source: str) -> str:
    # DICOMweb routes name the source by its UIDs (a fresh source is at generation 1).
    uids = {
        "study": dicomuids.study_uid(source, 1),
        "series": dicomuids.series_uid(source, 1, 0),
        "instance": dicomuids.instance_uid(source, 1, 0, 0),
    }
    segments = {**SEGMENTS, **uids}
    return re.sub(r"\{(\w+)\}", lambda m: segments.get(m.group(1), source), path)


def bound_refusal(client: FlaskClient, url: str, name: str, value: int) -> str | None:
    """The parser's bound message when ``name=value`` is refused by it, else None."""
    response = client.get(url, query_string={name: str(value)})
    body = response.get_json(silent=True) or {}
    if response.status_code == 400 and body.get("parameter") == name:
        message = body["message"]
        return (
            message
            if re.fullmatch(rf"{name} must be between -?\d+ and \d+, not -?\d+", message)
            else None
        )
    return None


def test_declared_integer_bounds_are_the_enforced_ones(
    app: Flask, client_source: tuple[FlaskClient, str]
) -> None:
    client, source = client_source
    spec = openapi.build(app)
    checked = 0
    for path, param in bounded_integers(spec):
        name, schema = param["name"], param["schema"]
        url = url_of(path, source)
        low, high = schema["minimum"], schema.get("maximum")
        where = f"{name} of GET {path}"
        if high is not None:
            message = bound_refusal(client, url, name, high + 1)
            assert message == f"{name} must be between {low} and {high}, not {high + 1}", where
            assert bound_refusal(client, url, name, high) is None, where
            checked += 1
        if high is not None or low > 0:
            # Without a maximum, below the minimum is still refused (as a bound when
            # the parser has one to state).
            refused = client.get(url, query_string={name: str(low - 1)})
            assert refused.status_code == 400, where
            assert refused.get_json()["parameter"] == name, where
            assert bound_refusal(client, url, name, low) is None, where
    # frame, jpegQuality, jpegSubsampling, webpQuality, avifQuality, width, height,
    # bins, tilesize, limit, ... on tiles, thumbnails, images, regions, DZI, jobs
    assert checked >= 40


@pytest.fixture
def client_source(app: Flask, source: str) -> tuple[FlaskClient, str]:
    return app.test_client(), source


def test_the_document_states_the_configured_bounds_and_defaults(app: Flask) -> None:
    spec = openapi.build(app)
    thumbnail = spec["paths"]["/item/{item_id}/tiles/thumbnail"]["get"]
    params = {p["name"]: p["schema"] for p in thumbnail["parameters"]}
    assert params["width"]["maximum"] == MAX_THUMBNAIL_SIZE
    assert params["jpegQuality"]["default"] == JPEG_QUALITY


def operation(spec: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return spec["paths"][path][method]  # type: ignore[no-any-return]


def test_open_mode_documents_no_credentials_but_the_plugins_secret(app: Flask) -> None:
    spec = openapi.build(app)
    tile = operation(spec, TILE)
    assert "security" not in tile
    assert not {"401", "403", "429"} & set(tile["responses"])
    assert "414" in tile["responses"]
    plugin = operation(spec, "/girder/items/{girder_item}", "post")
    assert plugin["security"] == [{"tilecastSecret": []}]
    assert {"401", "413", "414"} <= set(plugin["responses"])
    assert "413" in operation(spec, "/sources", "post")["responses"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["tilecastSecret"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Tilecast-Secret",
        "description": schemes["tilecastSecret"]["description"],
    }


def test_girder_mode_documents_tokens_and_refusals(settings: Settings) -> None:
    app = create_app(
        replace(settings, access_mode="girder", girder_url="http://127.0.0.1:9/api/v1")
    )
    spec = openapi.build(app)
    validate(spec)
    tile = operation(spec, TILE)
    # Public items need nothing; otherwise a token in a header, the query or a cookie.
    assert tile["security"] == [
        {},
        {"girderToken": []},
        {"girderTokenQuery": []},
        {"girderTokenCookie": []},
    ]
    assert {"401", "403"} <= set(tile["responses"])
    assert tile["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    jobs = operation(spec, "/jobs")
    assert {"tilecastSecret": []} in jobs["security"] and {} not in jobs["security"]
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["girderTokenQuery"]["in"], schemes["girderTokenQuery"]["name"]) == (
        "query",
        "token",
    )
    assert (schemes["girderTokenCookie"]["in"], schemes["girderTokenCookie"]["name"]) == (
        "cookie",
        "girderToken",
    )
    assert "security" not in operation(spec, "/healthz")


def test_signed_mode_documents_the_grant_and_rate_limits(settings: Settings) -> None:
    app = create_app(
        replace(
            settings,
            access_mode="signed",
            signing_keys="k1:0123456789abcdef0123",
            rate_limit=5.0,
        )
    )
    spec = openapi.build(app)
    validate(spec)
    tile = operation(spec, TILE)
    grant = {"signedPrefix", "signedExpires", "signedKeyid", "signedSignature"}
    assert [set(requirement) for requirement in tile["security"]] == [grant]
    schemes = spec["components"]["securitySchemes"]
    assert {schemes[name]["name"] for name in grant} == {"prefix", "expires", "keyid", "signature"}
    assert {"401", "403", "429"} <= set(tile["responses"])
    assert "Retry-After" in tile["responses"]["429"]["headers"]
    assert "security" not in operation(spec, "/openapi.json")
    assert "429" in operation(spec, "/openapi.json")["responses"]
    assert "429" not in operation(spec, "/healthz")["responses"]  # probes are not limited
