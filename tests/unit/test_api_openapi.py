"""``/openapi.json``: generated from the app's routes, valid, complete, and in step with
the parameters the parsing code reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask, Request
from openapi_spec_validator import validate
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.utils import cached_property

from tests.unit.fakes import FakeSender
from tilecast.api import openapi
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION
from tilecast.common.encoding import QUERY_PARAMETERS
from tilecast.common.settings import Settings

IGNORED = {"HEAD", "OPTIONS"}


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(replace(settings, render_timeout=1.0))
    svc = app.extensions[EXTENSION]
    svc.sender = FakeSender(svc.state)
    yield app
    svc.listener.stop()


def test_the_document_is_valid_openapi(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert spec == openapi.build(app)


def test_every_route_is_present_with_its_methods(app: Flask) -> None:
    paths = openapi.build(app)["paths"]
    for rule in app.url_map.iter_rules():
        path = openapi.path_template(rule.rule)
        assert path in paths, f"{rule.rule} is missing from /openapi.json"
        documented = {method.upper() for method in paths[path]}
        assert set(rule.methods or ()) - IGNORED <= documented, rule.rule


def test_a_route_nobody_described_is_documented_from_its_rule_and_docstring(app: Flask) -> None:
    def frobnicate(item_id: str, level: int) -> str:
        """Frobnicate one level. More words here."""
        return "ok"

    app.add_url_rule("/item/<item_id>/frob/<int:level>", view_func=frobnicate, methods=["PUT"])
    spec = openapi.build(app)
    validate(spec)
    operation = spec["paths"]["/item/{item_id}/frob/{level}"]["put"]
    assert operation["summary"] == "Frobnicate one level"
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["level"]["schema"]["type"] == "integer"
    assert params["item_id"]["in"] == "path" and params["item_id"]["required"]
    error = operation["responses"]["4XX"]["$ref"]
    assert error == "#/components/responses/Error"


def test_errors_have_the_error_schema(app: Flask) -> None:
    spec = openapi.build(app)
    schema = spec["components"]["schemas"]["Error"]
    assert set(schema["properties"]) == {"error", "message", "parameter"}
    tile = spec["paths"]["/item/{item_id}/tiles/zxy/{z}/{x}/{y}"]["get"]
    assert {"4XX", "5XX", "304"} <= set(tile["responses"])
    assert "image/jpeg" in tile["responses"]["200"]["content"]


def test_the_encoding_parameters_are_the_parsers(app: Flask) -> None:
    tile = openapi.build(app)["paths"]["/item/{item_id}/tiles/zxy/{z}/{x}/{y}"]["get"]
    assert set(QUERY_PARAMETERS) <= {p["name"] for p in tile["parameters"]}


class _RecordingArgs(ImmutableMultiDict):  # type: ignore[type-arg]
    """Query arguments that remember every name the view looked up."""

    read: set[str]

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default, type)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def _sample(name: str) -> str:
    return {"z": "0", "x": "0", "y": "0", "frame": "0", "name": "label"}.get(name, "abc")


def test_documented_query_parameters_cover_what_views_read(app: Flask) -> None:
    """Each GET view is called with a recording query: every name its parsing looks up
    must be among its documented parameters (a new route that reads one it does not
    declare with ``api.openapi.document`` fails here)."""
    read: set[str] = set()

    class RecordingRequest(Request):
        @cached_property
        def args(self) -> ImmutableMultiDict:  # type: ignore[override,type-arg]
            args = _RecordingArgs(super().args)
            args.read = read
            return args

    app.request_class = RecordingRequest
    client = app.test_client()
    checked = 0
    for path, item in openapi.build(app)["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        url = path
        for param in operation["parameters"]:
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", _sample(param["name"]))
        read.clear()
        client.get(url, query_string={"unrelated": "1"})
        documented = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        undocumented = read - documented - {"unrelated"}
        assert not undocumented, f"GET {path} reads {sorted(undocumented)} undocumented"
        checked += 1
    assert checked >= 8
