"""Request bounds (api/middleware/limits.py, the style's depth) and the per-client rate limiter
(api/middleware/ratelimit.py) in-process, against the suite's real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask, request

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.middleware.ratelimit import RateLimiter, client_address, parse_proxies
from tilecast.api.services import EXTENSION, Services
from tilecast.common.errors import ConfigurationError, RateLimited
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings


def make_app(settings: Settings, state: redis.Redis, **changes: object) -> Flask:
    app = create_app(replace(settings, render_timeout=5.0, **changes))  # type: ignore[arg-type]
    app.extensions[EXTENSION].sender = FakeSender(state)
    return app


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


@pytest.fixture
def bounded(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = make_app(settings, state, max_query_bytes=100, max_path_bytes=80, max_body_bytes=64)
    yield app
    services(app).listener.stop()


def services(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


def test_long_query_and_path_are_414_json(bounded: Flask, source: str) -> None:
    client = bounded.test_client()
    assert client.get(f"/item/{source}/tiles?frame=0").status_code == 200
    long_query = client.get(f"/item/{source}/tiles", query_string={"style": "x" * 100})
    assert long_query.status_code == 414
    assert long_query.get_json()["parameter"] == "query"
    long_path = client.get(f"/item/{source}/tiles/images/{'n' * 80}")
    assert long_path.status_code == 414
    assert long_path.get_json()["parameter"] == "path"


def test_large_bodies_are_413_json(bounded: Flask) -> None:
    response = bounded.test_client().post("/sources", json={"path": "/x" * 100})
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"


def test_deeply_nested_styles_are_400_naming_style(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    app = make_app(settings, state)
    try:
        client = app.test_client()
        for style in ('{"a":' * 10 + "1" + "}" * 10, "[" * 5000 + "]" * 5000):
            response = client.get(f"/item/{source}/tiles/zxy/0/0/0", query_string={"style": style})
            assert response.status_code == 400
            assert response.get_json()["parameter"] == "style"
    finally:
        services(app).listener.stop()


def test_region_like_endpoints_respect_the_pixel_bound(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    app = make_app(settings, state, max_region_pixels=100 * 100)
    try:
        client = app.test_client()
        region = client.get(f"/item/{source}/tiles/region", query_string={"width": 500})
        iiif = client.get(f"/iiif/{source}/full/500,/0/default.jpg")
        histogram = client.get(f"/item/{source}/tiles/histogram", query_string={"width": 500})
        filled = client.get(
            f"/item/{source}/tiles/thumbnail",
            query_string={"width": 200, "height": 200, "fill": "red"},
        )
        answers = (region, iiif, histogram, filled)
        assert [a.status_code for a in answers] == [400] * 4
        assert [a.get_json()["parameter"] for a in answers] == ["width", "size", "width", "width"]
        assert not services(app).sender.sent  # type: ignore[attr-defined]
    finally:
        services(app).listener.stop()


def test_token_bucket_allows_the_burst_then_429s(state: redis.Redis) -> None:
    # A refill of one token per 1000 s: no refill can happen during the test.
    limiter = RateLimiter(state, rate=0.001, burst=3)
    client = f"test:{uuid.uuid4().hex}"
    for _ in range(3):
        limiter.take(client)
    with pytest.raises(RateLimited) as info:
        limiter.take(client)
    assert info.value.retry_after > 900
    limiter.take(f"test:{uuid.uuid4().hex}")  # another client has its own bucket


def test_rate_limited_requests_get_429_with_retry_after(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    app = make_app(settings, state, rate_limit=0.001, rate_limit_burst=2)
    try:
        client = app.test_client()
        address = {"REMOTE_ADDR": f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
        statuses = [
            client.get(f"/item/{source}/tiles", environ_base=address).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        refused = client.get(f"/item/{source}/tiles", environ_base=address)
        assert refused.get_json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert client.get("/healthz", environ_base=address).status_code == 200
    finally:
        services(app).listener.stop()


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),  # through the trusted proxy
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # a forged left-most entry is ignored
        ("10.0.0.5", "1.2.3.4, 10.0.0.7", "1.2.3.4"),  # two trusted hops
        ("8.8.8.8", "1.2.3.4", "8.8.8.8"),  # an untrusted peer's header is ignored
    ],
)
def test_forwarded_addresses_only_through_trusted_proxies(
    peer: str, forwarded: str, client: str
) -> None:
    app = Flask("t")
    proxies = parse_proxies("10.0.0.0/8")
    with app.test_request_context(
        "/", environ_base={"REMOTE_ADDR": peer}, headers={"X-Forwarded-For": forwarded}
    ):
        assert client_address(request, proxies) == client
    with app.test_request_context(
        "/", environ_base={"REMOTE_ADDR": peer}, headers={"X-Forwarded-For": forwarded}
    ):
        assert client_address(request, ()) == peer


def test_bad_proxy_lists_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
        parse_proxies("10.0.0.0/8, not-an-address")


def test_style_of_the_largest_size_fits_the_default_query_bound() -> None:
    defaults = Settings()
    style = json.dumps({"palette": ["#ffffff"] * (defaults.max_style_bytes // 12)})
    assert len(style) <= defaults.max_style_bytes
    assert 3 * defaults.max_style_bytes < defaults.max_query_bytes
