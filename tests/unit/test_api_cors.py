"""CORS: preflights answered, answers to cross-origin requests readable by the page;
management routes closed to pages of other origins unless named."""

from __future__ import annotations

from dataclasses import replace

from tilecast.api.app import create_app
from tilecast.api.middleware.cors import management_endpoints
from tilecast.common.settings import Settings

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


# --- management routes: closed to other origins unless named --------------------------

PAGE = "http://viewer.example"
ADMIN = "https://admin.example"
SOURCES_PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def _app_client(settings: Settings, **changes: str):
    return create_app(replace(settings, **changes).resolved()).test_client()


def test_management_endpoints_are_decided_by_route() -> None:
    app = create_app(Settings().resolved())
    manage = management_endpoints(app)
    assert {"sources.register", "sources.list_sources", "sources.remove"} <= manage
    assert {"jobs.precache", "jobs.list_jobs", "jobs.job", "jobs.cancel"} <= manage
    assert {"girder.register", "girder.forget"} <= manage
    reads = {"tiles.tile", "tiles.metadata", "health.healthz", "iiif.info_json", "viewer.viewer"}
    assert reads <= {rule.endpoint for rule in app.url_map.iter_rules()}
    assert reads & manage == set()
    # The origin check runs for the management blueprints only: a tile hit never sees it.
    checked = {bp for bp, funcs in app.before_request_funcs.items() if any(
        f.__name__ == "refuse_foreign_origin" for f in funcs)}  # fmt: skip
    assert checked == {"sources", "jobs", "girder"}


def test_management_preflights_get_no_cors_headers_by_default() -> None:
    client = _client()
    for path, method in (("/sources", "POST"), ("/jobs/abc", "DELETE"), ("/jobs", "GET")):
        headers = {**SOURCES_PREFLIGHT, "Access-Control-Request-Method": method}
        preflight = client.options(path, headers=headers)
        assert "Access-Control-Allow-Origin" not in preflight.headers, path
        assert "Access-Control-Allow-Methods" not in preflight.headers, path
        assert "Origin" in preflight.headers["Vary"], path
    # Read routes keep answering any origin, preflight and simple request alike.
    image = client.options(TILE, headers=PREFLIGHT)
    assert image.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in image.headers["Access-Control-Allow-Methods"]
    health = client.get("/healthz", headers={"Origin": PAGE})
    assert health.headers["Access-Control-Allow-Origin"] == "*"


def test_management_requests_from_other_origins_are_refused_before_they_act() -> None:
    # Nothing listens on this Redis: a request that got past the check would be a 503.
    client = _client(cache_url="redis://127.0.0.1:9/0")
    item = "0123456789abcdef01234567"
    requests = [
        ("POST", "/sources"),
        ("GET", "/sources"),
        ("DELETE", f"/sources/{item}"),
        ("POST", f"/item/{item}/tiles/precache"),
        ("GET", "/jobs"),
        ("DELETE", "/jobs/abc"),
        ("POST", f"/girder/items/{item}"),
    ]
    for method, path in requests:
        answer = client.open(path, method=method, headers={"Origin": PAGE}, json={"path": "/x"})
        assert answer.status_code == 403, (method, path, answer.get_data(as_text=True))
        body = answer.get_json()
        assert body["error"] == "forbidden"
        assert "TILECAST_CORS_MANAGE_ORIGINS" in body["message"]
        assert "Access-Control-Allow-Origin" not in answer.headers


def test_management_answers_without_origin_and_from_its_own_origin(settings: Settings) -> None:
    client = _app_client(settings)
    assert client.get("/sources").status_code == 200  # curl, the CLI, the Girder plugin
    # A page served by this server (the test client's host is localhost).
    own = client.get("/sources", headers={"Origin": "http://localhost"})
    assert own.status_code == 200
    assert "Access-Control-Allow-Origin" not in own.headers


def test_named_origins_open_management(settings: Settings) -> None:
    client = _app_client(settings, cors_manage_origins=f"{ADMIN}, https://ops.example/")
    headers = {**SOURCES_PREFLIGHT, "Origin": ADMIN}
    preflight = client.options("/sources", headers=headers)
    assert preflight.headers["Access-Control-Allow-Origin"] == ADMIN
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    listed = client.get("/sources", headers={"Origin": "https://ops.example"})
    assert listed.status_code == 200
    assert listed.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert "ETag" in listed.headers["Access-Control-Expose-Headers"]
    # A refusal a named origin caused is readable by its page.
    refused = client.post("/sources", headers={"Origin": ADMIN}, json={"path": "/etc/passwd"})
    assert refused.status_code == 400
    assert refused.headers["Access-Control-Allow-Origin"] == ADMIN
    # Other origins stay refused; read routes still answer anyone.
    assert client.get("/sources", headers={"Origin": PAGE}).status_code == 403
    stranger = client.options("/sources", headers=SOURCES_PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in stranger.headers
    health = client.get("/healthz", headers={"Origin": PAGE})
    assert health.headers["Access-Control-Allow-Origin"] == "*"


def test_management_stays_closed_when_read_routes_name_origins() -> None:
    client = _client(cors_origins=PAGE)
    preflight = client.options("/sources", headers=SOURCES_PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert client.options(TILE, headers=PREFLIGHT).headers["Access-Control-Allow-Origin"] == PAGE
    assert client.post("/sources", headers={"Origin": PAGE}).status_code == 403
