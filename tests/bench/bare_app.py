"""The baseline of the hit benchmark: the least a Flask app can do to serve a cached tile.

One route with tilecast's tile URL, one Redis GET of the key tilecast itself wrote for that
tile, the bytes back with the same headers as tilecast's hit (``Content-Type``, ``ETag``,
``Cache-Control``). No parsing beyond Flask's int converters, no access check, no
generation lookup: whatever ``tilecast api`` does beyond this is its overhead.

Configured by environment (read here, once): ``BENCH_REDIS_URL``, ``BENCH_KEY_PREFIX``
(the key up to ``{z}``, e.g. ``tc:tile:{id}:{gen}:0:``), ``BENCH_KEY_SUFFIX`` (after ``{y}``,
e.g. ``:none:JPEG.q95.s0``), ``BENCH_CACHE_CONTROL``.

``python -m tests.bench.bare_app --bind HOST:PORT --workers N --threads T [--server S]``
serves it exactly as ``tilecast api`` serves tilecast: through ``tilecast.servers`` with
the same server, options and ``TILECAST_*`` settings; only the WSGI app differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os

import redis
from flask import Flask, Response


def create_app(
    redis_url: str | None = None,
    prefix: str | None = None,
    suffix: str | None = None,
    cache_control: str | None = None,
) -> Flask:
    """The app; what is not passed is read from the environment (the servers' factory
    call passes nothing; tests/bench/hit_cpu.py passes everything)."""
    client = redis.Redis.from_url(redis_url or os.environ["BENCH_REDIS_URL"])
    prefix = prefix if prefix is not None else os.environ["BENCH_KEY_PREFIX"]
    suffix = suffix if suffix is not None else os.environ["BENCH_KEY_SUFFIX"]
    cache_control = cache_control or os.environ.get("BENCH_CACHE_CONTROL", "public, max-age=86400")
    app = Flask(__name__)

    @app.get("/item/<source>/tiles/zxy/<int:z>/<int:x>/<int:y>")
    def tile(source: str, z: int, x: int, y: int) -> Response:
        key = f"{prefix}{z}:{x}:{y}{suffix}"
        data = client.get(key)
        if data is None:
            return Response(status=404)
        etag = hashlib.sha256(key.encode()).hexdigest()[:32]  # tilecast's strong ETag
        headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control}
        return Response(data, mimetype="image/jpeg", headers=headers)

    return app


def main() -> None:
    from tilecast.common.settings import get_settings
    from tilecast.servers import DEFAULT_SERVER, SERVERS, ServerOptions, run_server

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare_app")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    args = parser.parse_args()
    options = ServerOptions(
        args.bind,
        args.workers,
        args.threads,
        app_factory="tests.bench.bare_app:create_app",
        proc_name="tilecast-bench-bare",
    )
    run_server(args.server, options, get_settings())


if __name__ == "__main__":
    main()
