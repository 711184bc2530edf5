"""Request ids (header in, header out, into task headers) and the HTTP request counters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask, g

from tests.unit.fakes import FakeSender
from tilecast.api.app import create_app
from tilecast.api.miss.tasks import CelerySender
from tilecast.api.services import EXTENSION, Services
from tilecast.common import counters
from tilecast.common.logs import TASK_HEADER, RequestIdFilter, current_request_id, request_id_bound
from tilecast.common.settings import Settings


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    # A state database of its own: other tests' apps flush their request counters into
    # the session's whenever their background thread wakes, which the counting tests
    # here would see.
    state = settings.cache_url.rsplit("/", 1)[0] + "/12"
    app = create_app(replace(settings, render_timeout=1.0, state_url=state))
    svc: Services = app.extensions[EXTENSION]
    svc.sender = FakeSender(svc.state)
    yield app
    svc.listener.stop()


def test_a_request_id_is_made_and_returned(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert len(first) == 32 and first != second


def test_a_sane_incoming_id_is_kept_and_others_replaced(app: Flask) -> None:
    client = app.test_client()
    kept = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a:1"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a:1"
    forged = client.get("/healthz", headers={"X-Request-Id": "x\u00e9 y"})
    assert forged.headers["X-Request-Id"] != "x\u00e9 y"
    errors = client.get("/item/abc/tiles/zxy/a/0/0", headers={"X-Request-Id": "err-1"})
    assert errors.status_code == 400 and errors.headers["X-Request-Id"] == "err-1"


def test_the_id_is_bound_during_the_request_only(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())

    @app.get("/probe-request-id")
    def probe() -> dict[str, Any]:
        logging.getLogger("tests.observe").warning("in the view")
        return {"bound": current_request_id(), "g": g.request_id}

    with caplog.at_level(logging.WARNING, logger="tests.observe"):
        body = app.test_client().get("/probe-request-id", headers={"X-Request-Id": "r1"}).json
    assert body == {"bound": "r1", "g": "r1"}
    assert [r.request_id for r in caplog.records if r.name == "tests.observe"] == ["r1"]
    assert current_request_id() is None


def test_requests_are_counted_by_route_template_method_and_status_class(app: Flask) -> None:
    svc: Services = app.extensions[EXTENSION]
    svc.counters.flush()  # the background thread may flush at any time: compare totals
    before = counters.read(svc.state)
    client = app.test_client()
    client.get("/item/abc/tiles/zxy/a/0/0")
    client.get("/item/def/tiles/zxy/b/0/0")
    client.get("/healthz")
    client.get("/no/such/route")
    client.open("/healthz", method="BREW")
    svc.counters.flush()
    after = counters.read(svc.state)

    def added(method: str, status: int, route: str | None) -> int:
        field = counters.http_request_field(method, status, route)
        return after.get(field, 0) - before.get(field, 0)

    tile = "/item/{item_id}/tiles/zxy/{z}/{x}/{y}"
    assert added("GET", 400, tile) == 2
    assert added("GET", 200, "/healthz") == 1
    assert added("GET", 404, None) == 1
    assert added("OTHER", 405, None) == 1  # no label value a client can invent
    field = counters.http_request_field("GET", 400, tile)
    assert counters.parse_http_request_field(field) == ("GET", "4xx", tile)


def test_tasks_carry_the_bound_id_in_a_header(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = CelerySender(settings)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(sender.celery, "send_task", lambda *a, **kw: sent.append(kw))
    with request_id_bound("req-9"):
        sender.send("tilecast.render_tile", {"request": {}})
    sender.send("tilecast.render_tile", {"request": {}})
    assert sent[0]["headers"] == {TASK_HEADER: "req-9"}
    assert sent[1]["headers"] is None
    assert "request_id" not in sent[0]  # the payload is unchanged
