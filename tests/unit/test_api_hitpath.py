"""The raw WSGI hit path (api/hitpath/) answers tile hits exactly as the Flask path does --
status, body, every header in order -- and leaves everything else to Flask; counters and
activity are recorded the same. Each request is sent twice, once through the app (hit
path in front) and once through the Flask path alone (``HitPath.inner``), against a real
Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlencode

import pytest
import redis
from flask import Flask
from werkzeug import Request
from werkzeug.test import Client, EnvironBuilder

from tests.unit.fakes import METADATA, FakeSender
from tilecast.api.app import create_app
from tilecast.api.hitpath.answer import HitPath
from tilecast.api.hitpath.shapes import routes_of
from tilecast.api.services import EXTENSION, Services
from tilecast.common import activity, counters, signing
from tilecast.common.keys import prefetch_viewer_key
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.tiles import TileRequest
from tilecast.redis_server import free_port

TILE = b"\xff\xd8cached tile"
RID = {"X-Request-Id": "test-request-1"}  # a fixed id: the two answers compare whole
ORIGIN = "https://viewer.example.org"


def make_app(settings: Settings, state: redis.Redis, **changes: object) -> Flask:
    app = create_app(replace(settings, render_timeout=5.0, **changes))  # type: ignore[arg-type]
    services(app).sender = FakeSender(state)
    return app


def services(app: Flask) -> Services:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


def hit_path(app: Flask) -> HitPath:
    front = app.wsgi_app
    assert isinstance(front, HitPath)
    return front


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = make_app(settings, state)
    yield app
    services(app).listener.stop()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


def cache_tile(
    state: redis.Redis, source: str, z: int = 1, x: int = 0, y: int = 0, frame: int = 0
) -> str:
    generation = SourceRegistry(state).generation(source) or 0
    key = TileRequest(source=source, z=z, x=x, y=y, frame=frame).key(generation)
    state.set(key, TILE + key.encode())
    return key


def both(app: Flask, path: str, headers: dict[str, str] | None = None) -> tuple[object, object]:
    """The answer through the app and through the Flask path alone, as comparable tuples;
    also asserts which of them the hit path answered itself."""
    sent = {**RID, **(headers or {})}
    fast = Client(app).get(path, headers=sent)
    flask = Client(hit_path(app).inner).get(path, headers=sent)
    return answer_of(fast), answer_of(flask)


def answer_of(response: object) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, list(response.headers.items()), response.get_data()  # type: ignore[attr-defined]


def answered_by_hit_path(app: Flask, path: str, headers: dict[str, str] | None = None) -> bool:
    url, _, query = path.partition("?")
    builder = EnvironBuilder(path=url, query_string=query, headers={**RID, **(headers or {})})
    try:
        return hit_path(app).answer(builder.get_environ()) is not None
    finally:
        builder.close()


def test_a_hit_is_answered_as_flask_answers_it(app: Flask, state: redis.Redis, source: str) -> None:
    cache_tile(state, source)
    path = f"/item/{source}/tiles/zxy/1/0/0"
    fast, flask = both(app, path)
    assert fast == flask
    status, headers, body = fast  # type: ignore[misc]
    assert status == 200 and body.startswith(TILE)
    assert dict(headers)["X-Tilecast-Cache"] == "hit"
    assert answered_by_hit_path(app, path)


@pytest.mark.parametrize(
    "shape",
    [
        "/item/{s}/tiles/zxy/1/0/0",
        "/api/v1/item/{s}/tiles/zxy/1/0/0",
        "/item/{s}/tiles/fzxy/0/1/0/0",
        "/api/v1/item/{s}/tiles/fzxy/0/1/0/0",
        "/item/{s}/tiles/zxy/01/0/0",  # the same tile, as Flask reads it
    ],
)
def test_every_tile_shape_is_answered_alike(
    app: Flask, state: redis.Redis, source: str, shape: str
) -> None:
    cache_tile(state, source)
    path = shape.format(s=source)
    fast, flask = both(app, path)
    assert fast == flask and fast[0] == 200  # type: ignore[index]
    assert answered_by_hit_path(app, path)


def test_versioned_urls(app: Flask, state: redis.Redis, source: str) -> None:
    cache_tile(state, source)
    generation = SourceRegistry(state).generation(source) or 0
    path = f"/item/{source}/tiles/zxy/1/0/0"
    current = both(app, f"{path}?gen={generation}")
    assert current[0] == current[1]
    assert "immutable" in dict(current[0][1])["Cache-Control"]  # type: ignore[index]
    ahead = both(app, f"{path}?gen={generation + 5}")  # another process saw a bump first
    assert ahead[0] == ahead[1] and "immutable" not in dict(ahead[0][1])["Cache-Control"]  # type: ignore[index]
    SourceRegistry(state).bump_generation(source)
    services(app).generations.forget(source)  # as if the memo's TTL had passed
    cache_tile(state, source)
    old = both(app, f"{path}?gen={generation}")  # a mismatch: Flask's generation_gone
    assert old[0] == old[1] and old[0][0] == 404  # type: ignore[index]
    assert not answered_by_hit_path(app, f"{path}?gen={generation}")
    assert answered_by_hit_path(app, f"{path}?gen={generation + 1}")


def test_not_modified(app: Flask, state: redis.Redis, source: str) -> None:
    cache_tile(state, source)
    path = f"/item/{source}/tiles/zxy/1/0/0"
    etag = dict(both(app, path)[0][1])["ETag"]  # type: ignore[index]
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        fast, flask = both(app, path, {"If-None-Match": sent})
        assert fast == flask and fast[0] == 304  # type: ignore[index]
    for sent in ("*", '"other"'):  # "*" never answers 304 (api/http.py)
        fast, flask = both(app, path, {"If-None-Match": sent})
        assert fast == flask and fast[0] == 200  # type: ignore[index]


@pytest.mark.parametrize(
    ("origins", "origin"),
    [
        ("*", None),
        ("*", ORIGIN),
        (ORIGIN, ORIGIN),
        (ORIGIN, "https://elsewhere.example.org"),
        (ORIGIN, None),
        ("", ORIGIN),
    ],
)
def test_cors_headers(
    settings: Settings, state: redis.Redis, source: str, origins: str, origin: str | None
) -> None:
    app = make_app(settings, state, cors_origins=origins)
    try:
        cache_tile(state, source)
        headers = {"Origin": origin} if origin else {}
        fast, flask = both(app, f"/item/{source}/tiles/zxy/1/0/0", headers)
        assert fast == flask and fast[0] == 200  # type: ignore[index]
    finally:
        services(app).listener.stop()


def test_request_ids(app: Flask, state: redis.Redis, source: str) -> None:
    cache_tile(state, source)
    path = f"/item/{source}/tiles/zxy/1/0/0"
    sent = Client(app).get(path, headers={"X-Request-Id": "abc-123"})
    assert sent.headers["X-Request-Id"] == "abc-123"
    fresh = Client(app).get(path, headers={"X-Request-Id": "bad id"})
    assert len(fresh.headers["X-Request-Id"]) == 32 and "bad" not in fresh.headers["X-Request-Id"]
    assert Client(app).get(path).headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/item/{s}/tiles/zxy/1/0/1", {}),  # a miss: Flask renders it
        ("/item/nosuchitem/tiles/zxy/1/0/0", {}),  # unknown: Flask's 404
        ("/item/{s}/tiles/zxy/1/0/0?encoding=PNG", {}),  # another parameter
        ("/item/{s}/tiles/zxy/1/0/0?gen=1&gen=2", {}),
        ("/item/{s}/tiles/zxy/1/0/0?gen=x", {}),
        ("/item/{s}/tiles/zxy/1/0/0/", {}),
        ("/item/{s}/tiles/zxy/-1/0/0", {}),
        ("/item/{s}/tiles/zxy/a/0/0", {}),
        ("/item/{s}/tiles/zxy/1/0/0", {"Host": "bad host!"}),  # publicurl.py's 400
        ("/item/../tiles/zxy/1/0/0", {}),
        ("/item/{s}/tiles/xyz/1/0/0", {}),
        ("/item/{s}/tiles/fzxy/x/1/0/0", {}),
    ],
)
def test_what_the_hit_path_leaves_to_flask(
    app: Flask, state: redis.Redis, source: str, path: str, headers: dict[str, str]
) -> None:
    cache_tile(state, source)
    path = path.format(s=source)
    assert not answered_by_hit_path(app, path, headers)
    answer = Client(app).get(path, headers={**RID, **headers})
    if "/0/1" in path:
        assert answer.status_code == 200 and answer.headers["X-Tilecast-Cache"] == "miss"
        return
    # Once more through each, now that any render is cached: the same answers.
    flask = Client(hit_path(app).inner).get(path, headers={**RID, **headers})
    again = Client(app).get(path, headers={**RID, **headers})
    assert answer_of(again) == answer_of(flask)


def test_head_goes_to_flask(app: Flask, state: redis.Redis, source: str) -> None:
    cache_tile(state, source)
    answer = Client(app).head(f"/item/{source}/tiles/zxy/1/0/0")
    assert answer.status_code == 200 and answer.get_data() == b""


def test_counters_and_activity_are_recorded_alike(
    app: Flask, state: redis.Redis, source: str
) -> None:
    cache_tile(state, source)
    path = f"/item/{source}/tiles/zxy/1/0/0"
    svc = services(app)
    etag = Client(app).get(path).headers["ETag"]
    counts = []
    for client in (Client(app), Client(hit_path(app).inner)):
        svc.counters.flush()
        client.get(path)
        client.get(path)
        client.get(path, headers={"If-None-Match": etag})
        counts.append(svc.counters.pending())
    assert counts[0] == counts[1]
    route = "/item/{item_id}/tiles/zxy/{z}/{x}/{y}"
    assert counts[0] == {
        counters.API_TILE_HITS: 2,
        counters.API_NOT_MODIFIED: 1,
        counters.http_request_field("GET", 200, route): 2,
        counters.http_request_field("GET", 304, route): 1,
    }
    svc.counters.flush()
    state.zrem("tc:active", source)
    svc.activity.forget(source)
    Client(app).get(path)
    assert activity.last_seen(state)[source] > 0  # the hit path's GET recorded the viewing


def test_modes_the_hit_path_does_not_answer(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    """Girder tokens and rate limits stay on the Flask path (and TILECAST_HIT_PATH=0 puts
    every request there)."""
    girder = create_app(
        replace(settings, access_mode="girder", girder_url="http://girder:1/api/v1")
    )
    limited = make_app(settings, state, rate_limit=1000.0)
    off = create_app(replace(settings, hit_path=0))
    try:
        for app in (girder, limited, off):
            assert not isinstance(app.wsgi_app, HitPath)
        cache_tile(state, source)
        assert Client(limited).get(f"/item/{source}/tiles/zxy/1/0/0").status_code == 200
    finally:
        for app in (girder, limited, off):
            services(app).listener.stop()


KEYS = "k1:" + "s" * 32


def test_signed_urls(settings: Settings, state: redis.Redis, source: str) -> None:
    """A grant in the query is checked by the hit path itself (one HMAC); whatever it
    refuses, or a grant in the path, Flask answers: never a cached tile without a grant."""
    app = make_app(settings, state, access_mode="signed", signing_keys=KEYS)
    try:
        cache_tile(state, source)
        generation = SourceRegistry(state).generation(source) or 0
        path = f"/item/{source}/tiles/zxy/1/0/0"
        keys = signing.parse_keys(KEYS)

        def signed(prefix: str, expires: int, extra: str = "") -> str:
            return path + "?" + urlencode(signing.sign(prefix, expires, keys)) + extra

        lasting = signed(f"/item/{source}/", 2**33)
        for url in (
            lasting,
            lasting + f"&gen={generation}",
            signed(f"/item/{source}/tiles/", 2**33),
        ):
            fast, flask = both(app, url)
            assert fast == flask and fast[0] == 200, url  # type: ignore[index]
            assert dict(fast[1])["Cache-Control"].startswith("private, max-age=")  # type: ignore[index]
            assert answered_by_hit_path(app, url)
        refused = {
            path: 401,
            signed("/item/other/", 2**33): 403,
            lasting.replace("signature=", "signature=x"): 403,
            signed(f"/item/{source}/", int(time.time()) - 5): 403,
            lasting + "&token=abc": 200,  # another parameter: Flask's answer
        }
        for url, status in refused.items():
            assert not answered_by_hit_path(app, url), url
            fast, flask = both(app, url)
            assert fast == flask and fast[0] == status, url  # type: ignore[index]
        # The grant's time left bounds max-age, as on the Flask path.
        soon = signed(f"/item/{source}/", int(time.time()) + 100)
        control = Client(app).get(soon).headers["Cache-Control"]
        assert control.startswith("private, max-age=") and 95 <= int(control.split("=")[1]) <= 100
        # The grant in the path (IIIF clients' form) goes to Flask.
        grant = signing.sign(f"/item/{source}/", 2**33, keys)
        in_path = "/signed/{keyid}/{expires}/{signature}".format(**grant) + path
        assert not answered_by_hit_path(app, in_path)
        assert Client(app).get(in_path).headers["X-Tilecast-Cache"] == "hit"
    finally:
        services(app).listener.stop()


def test_a_changed_tile_route_stops_the_app(app: Flask) -> None:
    other = Flask("other")
    other.add_url_rule("/item/<item_id>/tiles/zxy/<int:z>/<x>/<y>", "tiles.tile", lambda: "")
    with pytest.raises(RuntimeError, match=r"tiles\.tile"):
        routes_of(other)
    assert len(routes_of(app)) == 4


def test_the_hooks_a_hit_passes_are_the_ones_mirrored(app: Flask) -> None:
    """The hit path does by itself what these request hooks do for a tile hit (see
    api/hitpath/answer.py). A hook added for the tile routes must be mirrored there (or
    make ``install`` leave the hit path out): this list changes with it."""
    tile_blueprints = (None, "tiles", "girder_api_tiles")

    def names(hooks: dict[str | None, list[object]]) -> dict[str | None, list[str]]:
        return {
            blueprint: [f.__name__ for f in funcs]  # type: ignore[attr-defined]
            for blueprint, funcs in hooks.items()
            if blueprint in tile_blueprints
        }

    assert names(app.before_request_funcs) == {  # type: ignore[arg-type]
        None: ["bind_id", "bound_request_line", "refuse_old_generations", "refuse_bad_host"]
    }
    assert names(app.after_request_funcs) == {  # type: ignore[arg-type]
        None: ["record", "add_cors_headers", "version"]
    }
    assert names(app.teardown_request_funcs) == {None: ["unbind_id"]}  # type: ignore[arg-type]
    # Other blueprints' preprocessors (the DICOMweb study lookup) never see a tile route.
    assert not names(app.url_value_preprocessors)  # type: ignore[arg-type]


def test_redis_down_is_answered_by_flask(settings: Settings) -> None:
    """A failure on the hit path is Flask's to answer (its 503), never a bare error."""
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(replace(settings, cache_url=closed, state_url=closed, broker_url=closed))
    try:
        path = "/item/abc/tiles/zxy/1/0/0"
        fast, flask = both(app, path)
        assert fast == flask and fast[0] == 503  # type: ignore[index]
    finally:
        services(app).listener.stop()


def test_with_prefetch_on_hits_feed_the_viewers_history(
    settings: Settings, state: redis.Redis, source: str
) -> None:
    """A hit, answered by the hit path or by Flask, is handed to the prefetch thread as
    the same viewer's tile as a miss would be (api/miss/prefetch.py)."""
    app = make_app(settings, state, prefetch=1)
    try:
        svc = services(app)
        assert svc.prefetcher is not None
        cache_tile(state, source, z=1, x=0, y=0)
        cache_tile(state, source, z=1, x=1, y=0)
        headers = {"User-Agent": "viewer/2"}
        assert answered_by_hit_path(app, f"/item/{source}/tiles/zxy/1/0/0", headers)
        fast = Client(app).get(f"/item/{source}/tiles/zxy/1/0/0", headers=headers)
        assert fast.status_code == 200
        flask_path = Client(hit_path(app).inner)
        slow = flask_path.get(f"/item/{source}/tiles/zxy/1/1/0", headers=headers)
        assert slow.status_code == 200
        svc.prefetcher.drain()
        builder = EnvironBuilder(path="/", headers=headers)
        try:
            viewer = svc.prefetcher.viewer(
                Request(builder.get_environ()), TileRequest(source=source, z=1, x=0, y=0)
            )
        finally:
            builder.close()
        asked = state.lrange(prefetch_viewer_key(viewer), 0, -1)
        assert asked == [b"1,0,0", b"1,0,0", b"1,1,0"]
    finally:
        services(app).listener.stop()
