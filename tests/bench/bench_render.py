"""Benchmark 3: render throughput of a whole level with 2 worker processes.

One Celery worker with a pool of 2 processes renders every tile of one level, cold (the
source's styled and unstyled tiles deleted first; the worker keeps its files open). Two ways
to dispatch, both measured:

- ``celery``: every tile sent at once as a ``tilecast.render_tile`` task by name, with the
  payload of ``common.taskprotocol``, and the completions counted on the ``tc:done`` channel:
  the render rate of the pool, with the api out of the way.
- ``http``: every tile asked at once through ``tilecast api`` (32 concurrent keep-alive
  connections from a thread pool in this process): what a bulk client of the HTTP API gets.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.bench import harness
from tests.bench.bench_hits import fetch_all
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section
from tilecast.common.inflight import DONE_CHANNEL, Completion
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    TASK_RENDER_TILE,
    TASK_RENDER_TILES,
    make_celery,
    render_tile_payload,
    render_tiles_payload,
)
from tilecast.common.tiles import TileRequest

HTTP_CONNECTIONS = 32
WORKERS = 2


@dataclass(frozen=True)
class Level:
    label: str
    image: str  # "pyramid" or "single"
    levels_above_base: int


LEVELS = (
    Level("pyramidal TIFF, native (JPEG pass-through)", "pyramid", 0),
    Level("pyramidal TIFF, native (JPEG pass-through)", "pyramid", 1),
    Level("single-level TIFF, synthesized from the base", "single", 1),
)


def dispatch_celery(
    stack: harness.Stack,
    source_id: str,
    tiles: list[tuple[int, int, int]],
    timeout: float,
    style: str | None = None,
) -> tuple[float, int]:
    """Send every tile as a ``tilecast.render_tile`` task (``style``: canonical style
    JSON); seconds until the last completion, and errors."""
    gen = harness.generation(stack, source_id)
    requests = [TileRequest(source_id, z, x, y, style=style) for z, x, y in tiles]
    messages = [
        (TASK_RENDER_TILE, render_tile_payload(r, gen), QUEUE_INTERACTIVE) for r in requests
    ]
    return send_and_wait(stack, messages, {r.key(gen) for r in requests}, timeout)


def tile_blocks(tiles: list[tuple[int, int, int]], side: int) -> list[list[tuple[int, int, int]]]:
    """``tiles`` of one level grouped into side x side squares of neighbours."""
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for z, x, y in tiles:
        groups.setdefault((x // side, y // side), []).append((z, x, y))
    return [groups[k] for k in sorted(groups, key=lambda k: (k[1], k[0]))]


def dispatch_batches(
    stack: harness.Stack,
    source_id: str,
    tiles: list[tuple[int, int, int]],
    timeout: float,
    style: str | None = None,
    side: int = 8,
) -> tuple[float, int]:
    """Send the tiles as ``tilecast.render_tiles`` tasks of side x side neighbours on the
    bulk queue (the pre-rendering path); seconds until the last completion, and errors."""
    gen = harness.generation(stack, source_id)
    blocks = [
        [TileRequest(source_id, z, x, y, style=style) for z, x, y in group]
        for group in tile_blocks(tiles, side)
    ]
    messages = [(TASK_RENDER_TILES, render_tiles_payload(b, gen), QUEUE_BULK) for b in blocks]
    return send_and_wait(stack, messages, {r.key(gen) for b in blocks for r in b}, timeout)


def send_and_wait(
    stack: harness.Stack,
    messages: list[tuple[str, dict[str, Any], str]],
    keys: set[str],
    timeout: float,
) -> tuple[float, int]:
    """Send (task name, payload, queue) messages at once; seconds until a completion for
    every key has arrived on ``tc:done``, and how many of those were errors."""
    app = make_celery(Settings.from_env(stack.env))
    pending = set(keys)
    pubsub = stack.redis.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DONE_CHANNEL)
    while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
        pass
    errors = 0
    with app.producer_or_acquire() as producer:
        start = time.perf_counter()
        for name, payload, queue in messages:
            app.send_task(name, args=[payload], queue=queue, producer=producer)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pending)} of {len(keys)} tiles not done in {timeout}s")
            message = pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            done = Completion.decode(message["data"])
            if done.key in pending:
                pending.discard(done.key)
                errors += done.error is not None
        elapsed = time.perf_counter() - start
    pubsub.close()
    return elapsed, errors


def dispatch_http(
    stack: harness.Stack, source_id: str, tiles: list[tuple[int, int, int]]
) -> tuple[float, int]:
    paths = [harness.tile_path(source_id, z, x, y) for z, x, y in tiles]
    chunks = [paths[i::HTTP_CONNECTIONS] for i in range(HTTP_CONNECTIONS)]

    def run(chunk: list[str]) -> int:
        http = stack.http()
        try:
            return sum(http.get(p).status != 200 for p in chunk)
        finally:
            http.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(HTTP_CONNECTIONS) as pool:
        errors = sum(pool.map(run, chunks))
    return time.perf_counter() - start, errors


def run(ctx: harness.BenchContext, *, levels: tuple[Level, ...] = LEVELS) -> Section:
    section = Section(
        title=f"3. Render throughput of a whole level, {WORKERS} worker processes",
        measures=(
            f"Tiles per second rendering every tile of one level, cold, with one Celery "
            f"worker of {WORKERS} pool processes (`tilecast worker --concurrency {WORKERS}`). "
            "*celery*: all tiles sent at once as `tilecast.render_tile` tasks by name "
            "(payloads from `common.taskprotocol`), done when the last completion arrives on "
            "`tc:done`: the render rate, api excluded. *http*: all tiles asked at once through "
            f"`tilecast api` (2 server processes x 16 threads) over {HTTP_CONNECTIONS} "
            "keep-alive connections from a Python thread pool: what a bulk HTTP client gets, "
            "with the api, the single-flight bookkeeping and the client sharing the 2 cores "
            "with the workers. Before each run the source's tiles and unstyled tiles are "
            "deleted from Redis; the workers keep the file open. The last rows repeat the "
            "*celery* runs with 1 pool process, to show how the rate scales with processes."
        ),
        headers=[
            "image, tiles",
            "level (z, levels above base)",
            "tiles",
            "tiles read from the file",
            "worker processes",
            "dispatch",
            "seconds",
            "tiles/s",
            "ms per tile per process",
            "errors",
        ],
    )
    rates: dict[tuple[str, int, int, str], float] = {}
    with Processes(ctx.scratch / "render") as procs:
        stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=WORKERS, api_workers=2, api_threads=16
        )
        ids = {
            "pyramid": harness.add_source(stack, ctx.pyramid),
            "single": harness.add_source(stack, ctx.single),
        }
        metas = {name: harness.tile_metadata(stack, sid) for name, sid in ids.items()}
        client = stack.redis.client()
        for processes in (WORKERS, 1):
            if processes != WORKERS:
                assert stack.worker is not None
                procs.stop(stack.worker)
                stack.worker = harness.start_worker(procs, stack.env, processes, "worker-1")
                harness.wait_worker_ready(client, stack.env, stack.worker)
            modes = ("celery", "http") if processes == WORKERS else ("celery",)
            for level in levels:
                source_id = ids[level.image]
                meta = metas[level.image]
                z = int(meta["levels"]) - 1 - level.levels_above_base
                tiles = [(z, x, y) for x, y in harness.level_tiles(meta, z)]
                # A few tiles at once first, so that every pool process has opened the
                # file before the timed runs (their tiles are deleted again below).
                warm = [harness.tile_path(source_id, z, x, y) for _, x, y in tiles[:8]]
                fetch_all(stack.api_port, warm, concurrency=8)
                for mode in modes:
                    harness.delete_keys(client, f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*")
                    before = harness.stats(stack)
                    if mode == "celery":
                        seconds, errors = dispatch_celery(stack, source_id, tiles, timeout=600)
                    else:
                        seconds, errors = dispatch_http(stack, source_id, tiles)
                    # Counted reads arrive with the workers' next counter flush.
                    after = harness.settled(lambda: harness.stats(stack))
                    reads = after.get("raw_tiles_read", 0) - before.get("raw_tiles_read", 0)
                    rate = len(tiles) / seconds
                    rates[(level.image, z, processes, mode)] = rate
                    print(
                        f"  render {level.image} z={z} {processes} proc {mode}: {len(tiles)} "
                        f"tiles in {seconds:.1f}s = {rate:,.0f} tiles/s, errors {errors}",
                        flush=True,
                    )
                    section.rows.append(
                        [
                            f"{meta['sizeX']}x{meta['sizeY']} {level.label}",
                            f"z={z} ({level.levels_above_base})",
                            str(len(tiles)),
                            str(reads),
                            str(processes),
                            mode,
                            f"{seconds:.1f}",
                            f"**{rate:,.0f}**",
                            f"{processes * 1000 / rate:.1f}",
                            str(errors),
                        ]
                    )
    for level in levels:
        meta = metas[level.image]
        z = int(meta["levels"]) - 1 - level.levels_above_base
        two, one = rates[(level.image, z, WORKERS, "celery")], rates[(level.image, z, 1, "celery")]
        http = rates[(level.image, z, WORKERS, "http")]
        section.notes.append(
            f"{level.image} z={z}: http / celery = {http / two:.2f}; "
            f"{WORKERS} processes / 1 process = {two / one:.2f}"
        )
    return section
