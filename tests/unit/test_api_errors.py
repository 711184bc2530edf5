"""The one error mapping: JSON bodies, statuses, Retry-After, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tilecast.api.app import create_app
from tilecast.common.errors import (
    BadRequest,
    RenderFailed,
    RenderTimeout,
    ServiceUnavailable,
    TileOutOfRange,
    UnsupportedImage,
)
from tilecast.common.settings import Settings

# Nothing listens on port 1: every Redis call fails at once.
DEAD_REDIS = Settings(cache_url="redis://127.0.0.1:1/0").resolved()


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(DEAD_REDIS)
    errors = [
        BadRequest("bad x", parameter="x"),
        TileOutOfRange("off the image", parameter="z"),
        UnsupportedImage("cannot read"),
        RenderFailed("boom"),
        ServiceUnavailable("later"),
        RenderTimeout("slow"),
    ]
    for index, error in enumerate(errors):
        app.add_url_rule(f"/raise/{index}", f"raise{index}", _raiser(error))
    app.add_url_rule("/crash", "crash", _crash)
    yield app


def _raiser(error: Exception):  # type: ignore[no-untyped-def]
    def view() -> str:
        raise error

    return view


def _crash() -> str:
    raise RuntimeError("secret /srv/internal/path.tiff")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.mark.parametrize(
    ("index", "status", "body"),
    [
        (0, 400, {"error": "bad_request", "message": "bad x", "parameter": "x"}),
        (1, 404, {"error": "tile_out_of_range", "message": "off the image", "parameter": "z"}),
        (2, 422, {"error": "unsupported_image", "message": "cannot read"}),
        (3, 502, {"error": "render_failed", "message": "boom"}),
        (4, 503, {"error": "service_unavailable", "message": "later"}),
        (5, 504, {"error": "render_timeout", "message": "slow"}),
    ],
)
def test_tilecast_errors(client: FlaskClient, index: int, status: int, body: dict) -> None:
    response = client.get(f"/raise/{index}")
    assert response.status_code == status
    assert response.is_json and response.get_json() == body
    assert ("Retry-After" in response.headers) == (status in (503, 504))


def test_unexpected_exception_is_a_bare_500(client: FlaskClient) -> None:
    response = client.get("/crash")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error", "message": "internal server error"}
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    missing = client.get("/nothing/here")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = client.delete("/sources")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_redis_down_is_503_with_retry_after(client: FlaskClient) -> None:
    for path in ["/item/abc/tiles/zxy/0/0/0", "/item/abc/tiles", "/sources", "/readyz"]:
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.get_json()["error"] == "service_unavailable"
        assert response.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 200


def test_parse_errors_come_before_any_redis_call(client: FlaskClient) -> None:
    response = client.get("/item/abc/tiles/zxy/0/0/0?encoding=BMP")
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "encoding"
    assert client.get("/item/abc/tiles/zxy/a/0/0").get_json()["parameter"] == "z"


def test_oversized_style_is_400_naming_style() -> None:
    client = create_app(replace(DEAD_REDIS, max_style_bytes=100)).test_client()
    style = '{"palette": [' + ",".join(['"#ffffff"'] * 20) + "]}"
    response = client.get("/item/abc/tiles/zxy/0/0/0", query_string={"style": style})
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "style"
    assert "100 bytes" in response.get_json()["message"]


def test_api_imports_no_rendering_code() -> None:
    """A front-end box needs no libvips: the api never loads workers, pyvips, numpy or PIL."""
    code = (
        "import sys, tilecast.api.app\n"
        "tilecast.api.app.create_app()\n"
        "bad = sorted({m for m in sys.modules if m.startswith('tilecast.workers')} | "
        "({m.split('.')[0] for m in sys.modules} & {'pyvips', 'numpy', 'PIL'}))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(("sent", "kept"), [(7, 7), (0, 1), (4000, 300), (2.6, 3), ("x", 10)])
def test_a_workers_retry_after_comes_back_bounded(sent: object, kept: int) -> None:
    from tilecast.api.errors import worker_error

    error = worker_error({"error": "remote_throttled", "message": "m", "retry_after": sent})
    assert type(error).__name__ == "RemoteThrottled" and error.retry_after == kept  # type: ignore[attr-defined]
    # An error without a Retry-After takes none.
    assert not hasattr(worker_error({"error": "not_found", "retry_after": 5}), "retry_after")
