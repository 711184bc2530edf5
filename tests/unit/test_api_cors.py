"""CORS: preflights answered, answers to cross-origin requests readable by the page."""

from __future__ import annotations

from api.app import create_app
from common.settings import Settings

TILE = "/item/0123456789abcdef01234567/tiles/zxy/0/0/0"
PREFLIGHT = {
    "Origin": "http://viewer.example",
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "girder-token",
}


def _client(**settings: str):
    return create_app(Settings(**settings).resolved()).test_client()


def test_any_origin_by_default() -> None:
    client = _client()
    preflight = client.options(TILE, headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Girder-Token" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.get("/healthz", headers={"Origin": "http://viewer.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in answer.headers["Access-Control-Expose-Headers"]
    # The same headers without Origin: one cached copy serves every origin, no Vary.
    plain = client.get("/healthz")
    assert plain.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in plain.headers.get("Vary", "")


def test_listed_origins_are_echoed_others_get_nothing() -> None:
    client = _client(cors_origins="http://viewer.example, https://other.example/")
    answer = client.get("/healthz", headers={"Origin": "https://other.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://other.example"
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in answer.headers["Vary"]
    stranger = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert "Origin" in stranger.headers["Vary"]
    assert "Origin" in client.get("/healthz").headers["Vary"]  # no Origin: varies too


def test_no_cors_when_no_origin_is_configured() -> None:
    client = _client(cors_origins="")
    answer = client.get("/healthz", headers={"Origin": "http://viewer.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_a_preflight_needs_no_girder_token() -> None:
    # Girder is never asked (nothing listens there): the preflight carries no credentials.
    client = _client(access_mode="girder", girder_url="http://127.0.0.1:9/api/v1")
    preflight = client.options(TILE, headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
