"""Server CPU per cache hit, in-process: tilecast's WSGI app and the bare app
(tests/bench/bare_app.py) called directly with a prepared environ, side by side.

No HTTP server, no sockets between client and app: what is timed is what the app itself
spends per request (``time.process_time`` of this process: the WSGI call, the Redis
client's round trip as seen from the client side, the body handed back), which is what a
WSGI server's worker threads spend on top of their own HTTP work. Both apps read the same
tile from the same redis-server; rounds alternate the apps so that both see the same
machine. On a shared machine req/s move with the neighbours; CPU per request and its
ratio move far less.

``python -m tests.bench.hit_cpu [--requests N] [--rounds R] [--tile-bytes B]`` starts its
own redis-server, registers a source, writes one tile of ``B`` bytes under the key
tilecast's hit path reads, and prints µs/request per app and scenario; :func:`measure`
is what bench_hits.py (section 1) calls beside its wrk rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.tiles import TileRequest

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
METADATA = {
    "levels": 8,
    "sizeX": 30000,
    "sizeY": 20000,
    "tileWidth": 256,
    "tileHeight": 256,
    "dtype": "uint8",
    "bandCount": 3,
}
# JPEG-sized tiles of section 1 (~34 KB full resolution).
DEFAULT_TILE_BYTES = 34_000


def environ_for(
    path: str, query: str = "", headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A GET's WSGI environ as a server builds it (one keep-alive client)."""
    builder = EnvironBuilder(path=path, query_string=query, headers=dict(headers or {}))
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    environ["REMOTE_ADDR"] = "127.0.0.1"
    return environ


def call(app: WsgiApp, environ: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request: status, headers and body, the iterable closed as a server would."""
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, headers

    result = app(dict(environ), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return answer["status"], answer["headers"], body


def cpu_us(app: WsgiApp, environ: Mapping[str, Any], requests: int) -> float:
    """CPU µs of this process per request, over ``requests`` calls."""
    start = time.process_time()
    for _ in range(requests):
        call(app, environ)
    return (time.process_time() - start) * 1e6 / requests


@dataclass
class Scenario:
    """One request shape against one app."""

    name: str
    app: WsgiApp
    environ: dict[str, Any]
    expect: str = "200 OK"
    samples: list[float] = field(default_factory=list)


def measure(scenarios: list[Scenario], requests: int, rounds: int) -> dict[str, float]:
    """Median CPU µs/request of every scenario over ``rounds``, run in a rotating order
    after a warm-up call of each (which also checks the status it answers)."""
    for scenario in scenarios:
        status = call(scenario.app, scenario.environ)[0]
        if status != scenario.expect:
            raise RuntimeError(f"{scenario.name}: {status}, expected {scenario.expect}")
        cpu_us(scenario.app, scenario.environ, max(1, requests // 10))
    for r in range(rounds):
        shift = r % len(scenarios)
        for scenario in [*scenarios[shift:], *scenarios[:shift]]:
            scenario.samples.append(cpu_us(scenario.app, scenario.environ, requests))
    return {s.name: statistics.median(s.samples) for s in scenarios}


@dataclass
class Fixture:
    """A registered source with one cached tile, and the apps that serve it."""

    settings: Settings
    source: str
    generation: int
    key: str
    path: str


def prepare(redis_url: str, tile_bytes: int, settings: Settings | None = None) -> Fixture:
    """Register a source and cache tile (z=7, x=3, y=2) of it under tilecast's key."""
    from tilecast.common.redisconn import connect

    settings = settings or Settings(cache_url=redis_url).resolved()
    state = connect(settings.state_url)
    source = uuid.uuid4().hex[:24]
    registry = SourceRegistry(state)
    registry.add(SourceRecord(source, "/bench/hit.tiff", "hit.tiff", dict(METADATA)))
    generation = registry.generation(source) or 0
    key = TileRequest(source=source, z=7, x=3, y=2).key(generation)
    connect(settings.cache_url).set(key, os.urandom(tile_bytes))
    return Fixture(settings, source, generation, key, f"/item/{source}/tiles/zxy/7/3/2")


def bare_app(fixture: Fixture) -> WsgiApp:
    from tests.bench.bare_app import create_app

    prefix, suffix = fixture.key.split(":7:3:2")
    cache_control = f"public, max-age={fixture.settings.http_max_age}"
    return create_app(fixture.settings.cache_url, prefix + ":", suffix, cache_control).wsgi_app


def tilecast_app(fixture: Fixture) -> WsgiApp:
    from tilecast.api.app import create_app

    return create_app(fixture.settings)  # type: ignore[return-value]


def flask_path(app: WsgiApp) -> WsgiApp:
    """tilecast's app without the raw hit path (api/hitpath/): every request through Flask,
    as before it (the same app object, so both share one process's services)."""
    from tilecast.api.hitpath.answer import HitPath

    inner = app.wsgi_app  # type: ignore[attr-defined]
    if not isinstance(inner, HitPath):
        raise RuntimeError("the app has no hit path in front (access mode, rate limit?)")
    return inner.inner


def hit_scenarios(fixture: Fixture, apps: Mapping[str, WsgiApp]) -> list[Scenario]:
    """Every app's plain hit; and for tilecast's apps, the other shapes of a hit: with an
    ``Origin`` (CORS), at the current ``gen`` (immutable), revalidated (304)."""
    tag = dict(call(next(iter(apps.values())), environ_for(fixture.path))[1])["ETag"]
    out = [Scenario(f"{name} hit", app, environ_for(fixture.path)) for name, app in apps.items()]
    for name, app in apps.items():
        if not name.startswith("tilecast"):
            continue
        origin = {"Origin": "https://viewer.example.org"}
        out += [
            Scenario(f"{name} hit, Origin", app, environ_for(fixture.path, headers=origin)),
            Scenario(
                f"{name} hit, gen", app, environ_for(fixture.path, f"gen={fixture.generation}")
            ),
            Scenario(
                f"{name} 304",
                app,
                environ_for(fixture.path, headers={"If-None-Match": tag}),
                "304 NOT MODIFIED",
            ),
        ]
    return out


def in_process(redis_url: str, tile_bytes: int, requests: int, rounds: int) -> dict[str, float]:
    """Median CPU µs/request of every scenario of :func:`hit_scenarios` for tilecast (hit
    path in front), tilecast's Flask path alone and the bare app, on ``redis_url``."""
    fixture = prepare(redis_url, tile_bytes)
    tilecast = tilecast_app(fixture)
    apps = {
        "tilecast": tilecast,
        "tilecast flask path": flask_path(tilecast),
        "bare": bare_app(fixture),
    }
    try:
        return measure(hit_scenarios(fixture, apps), requests, rounds)
    finally:
        tilecast.extensions["tilecast"].listener.stop()  # type: ignore[attr-defined]


def main() -> None:
    from tilecast.redis_server import RedisServer

    parser = argparse.ArgumentParser(prog="python -m tests.bench.hit_cpu")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tile-bytes", type=int, default=DEFAULT_TILE_BYTES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hit-cpu-") as scratch:
        server = RedisServer(Path(scratch))
        server.start()
        try:
            results = in_process(server.url, args.tile_bytes, args.requests, args.rounds)
        finally:
            server.stop()
    bare = results["bare hit"]
    for name, us in results.items():
        print(f"{name:34s} {us:8.1f} us/request  {us / bare:5.2f}x bare")


if __name__ == "__main__":
    main()
