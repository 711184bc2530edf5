"""Section 1's comparison without its rendering: cache hits of ``tilecast api`` with and
without the raw hit path (api/hitpath/, ``TILECAST_HIT_PATH``) beside the bare app,
under one HTTP server, loaded by wrk in rotating rounds; req/s and server CPU µs/request
(from /proc, the server's processes and their children) per side.

The tiles are written straight into Redis (random bytes of the given size, under the
keys tilecast's hit path reads, for a registered source with made-up metadata), so the
run needs no worker and no image: a quick check of the hit path while it changes.
bench_hits.py remains the benchmark of record (tiles rendered by tilecast itself,
Girder, redis-benchmark, several configurations).

``python -m tests.bench.hit_wrk [--server granian] [--workers 2 --threads 32]
[--connections 64] [--seconds 5] [--rounds 3] [--tile-bytes 34000]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from pathlib import Path

import redis

from tests.bench import harness
from tests.bench.bench_hits import Side, compare, start_bare
from tests.bench.hit_cpu import DEFAULT_TILE_BYTES, METADATA
from tests.bench.report import median
from tests.bench.wrk import ensure_wrk
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.tiles import TileRequest
from tilecast.servers import DEFAULT_SERVER, SERVERS

LEVEL = 7  # METADATA's full resolution
ACROSS, DOWN = 32, 16  # distinct tiles wrk spreads over


def cached_source(redis_url: str, tile_bytes: int) -> tuple[list[str], str]:
    """A registered source with ACROSS x DOWN cached tiles: the tile paths, and the last
    tile's key (for the bare app's key template)."""
    state = redis.Redis.from_url(redis_url)
    source = uuid.uuid4().hex[:24]
    registry = SourceRegistry(state)
    registry.add(SourceRecord(source, "/bench/hit.tiff", "hit.tiff", dict(METADATA)))
    generation = registry.generation(source) or 0
    pipe = state.pipeline(transaction=False)
    paths, key = [], ""
    for x in range(ACROSS):
        for y in range(DOWN):
            key = TileRequest(source=source, z=LEVEL, x=x, y=y).key(generation)
            pipe.set(key, os.urandom(tile_bytes))
            paths.append(harness.tile_path(source, LEVEL, x, y))
    pipe.execute()
    return paths, key


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hit_wrk")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tile-bytes", type=int, default=DEFAULT_TILE_BYTES)
    args = parser.parse_args()
    wrk = ensure_wrk()
    shape = {"workers": args.workers, "threads": args.threads, "server": args.server}
    with (
        tempfile.TemporaryDirectory(prefix="hit-wrk-") as scratch,
        harness.Processes(Path(scratch)) as procs,
    ):
        server = harness.start_redis(procs)
        paths, key = cached_source(server.url, args.tile_bytes)
        paths_file = Path(scratch) / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        env = harness.tilecast_env(server.url, [Path(scratch)])
        marker = f":{LEVEL}:{ACROSS - 1}:{DOWN - 1}:"
        head, tail = key.split(marker)
        sides = []
        for name, extra in (
            ("tilecast", {}),
            ("tilecast flask path", {"TILECAST_HIT_PATH": "0"}),
        ):
            child, port = harness.start_api(
                procs, {**env, **extra}, name=name.replace(" ", "-"), **shape
            )
            sides.append(Side(name, port, [child.proc.pid], args.workers, paths_file))
        bare, port = start_bare(
            procs, env, server.url, head + ":", ":" + tail, "public, max-age=86400", **shape
        )
        sides.append(Side("bare", port, [bare.proc.pid], args.workers, paths_file))
        label = f"{args.server} {args.workers}x{args.threads} c{args.connections}"
        results, _ = compare(
            wrk,
            sides,
            args.connections,
            seconds=args.seconds,
            rounds=args.rounds,
            warmup=1.0,
            label=label,
        )
    bare_result = results["bare"]
    print(
        f"\n{label}, {args.tile_bytes} B tiles, "
        f"{args.rounds} rounds of {args.seconds:g} s (medians)"
    )
    for name, result in results.items():
        ratios = [a.rps / b.rps for a, b in zip(result.rounds, bare_result.rounds, strict=True)]
        cpu = median(result.cpu_us)
        print(
            f"{name:22s} {result.rps:9,.0f} req/s  x{median(ratios):.2f} bare   "
            f"server CPU {cpu:6.0f} us/request  x{cpu / median(bare_result.cpu_us):.2f} bare   "
            f"errors {result.errors}"
        )


if __name__ == "__main__":
    main()
