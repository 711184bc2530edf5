"""Benchmark 2: cold-miss latency, tilecast over HTTP beside large_image's in-process getTile.

tilecast: one api process, one worker process, sequential requests over one keep-alive
connection, each a real miss: before every sample either the source's cached tiles (styled
and unstyled) are deleted ("file open": the worker still holds the file in its source cache)
or the source's generation is bumped ("file cold": new keys and a new source-cache entry,
so the worker opens the file again). The worker's render counter is checked after every
sample: exactly one tile rendered. The same tile is then asked again: the hit latency.

large_image: the same tiles, in its own process, ``getTile`` timed in-process with its caches
cleared before every sample ("file open": the same source object; "file cold": a fresh
``large_image.open`` inside the timed span). No HTTP, no queue, no Redis.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import harness
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms, percentile
from tilecast.common.registry import SourceRegistry

MODES = {
    "open_source": "file open",
    "cold_source": "file cold",
}


@dataclass(frozen=True)
class Case:
    label: str
    image: str  # "pyramid" or "single"
    levels_above_base: int


CASES = (
    Case("native (pyramidal TIFF, JPEG pass-through)", "pyramid", 0),
    Case("synthesized (single-level TIFF)", "single", 1),
    Case("synthesized (single-level TIFF)", "single", 3),
)


def pick_tiles(meta: dict[str, Any], z: int, count: int, seed: int) -> list[tuple[int, int, int]]:
    tiles = harness.level_tiles(meta, z)
    if len(tiles) < count:
        raise BenchError(f"level {z} has {len(tiles)} tiles, {count} wanted")
    return [(z, x, y) for x, y in random.Random(seed).sample(tiles, count)]


def large_image_times(path: Path, mode: str, tiles: list[tuple[int, int, int]], warmup: Any) -> Any:
    spec = {"path": str(path), "mode": mode, "tiles": tiles, "warmup": warmup}
    return harness.run_side("tests.bench.largeimage_side", spec, timeout=600)


def wait_rendered(stack: harness.Stack, before: dict[str, int]) -> dict[str, int]:
    """The counters once the worker has counted the tile it rendered (it counts after it
    announces, so poll a little)."""
    deadline = time.monotonic() + 5
    while True:
        after = harness.stats(stack)
        done = after.get("tiles_rendered", 0) - before.get("tiles_rendered", 0)
        if done >= 1 or time.monotonic() > deadline:
            return after
        time.sleep(0.01)


def run(ctx: harness.BenchContext, *, samples: int) -> Section:
    section = Section(
        title="2. Cold-miss latency: tilecast (HTTP, 1 worker) vs large_image getTile",
        measures=(
            "Milliseconds for one tile that is in no cache, asked alone. **tilecast** is "
            "measured end to end as a viewer sees it: HTTP request to `tilecast api` "
            "(1 server process), cache miss, single-flight claim, Celery task through Redis, "
            "the render in the worker (1 process), the tile written to Redis, the completion "
            "signal, the api reading and sending it. **large_image** is only the in-process "
            "`getTile` call (no HTTP, no queue, no Redis; the Girder plugin would add its own "
            "HTTP and request handling on top). *file open*: the file is already open (tilecast's "
            "worker source cache, the same large_image source object), tiles are not cached; "
            "*file cold*: the file is opened again too (tilecast: generation bumped; "
            "large_image: `large_image.open` inside the timed span). Both read the file through "
            f"the OS page cache. {samples} distinct tiles per row, the same tiles on both sides; "
            "p50 / p95. The last column is tilecast's hit latency for the same tiles over the "
            "same connection: the HTTP floor under every miss."
        ),
        headers=[
            "tile",
            "level (z, levels above base)",
            "base tiles read per tile",
            "cache state",
            "tilecast miss p50 / p95 ms",
            "large_image p50 / p95 ms",
            "p50 ratio tilecast / large_image",
            "tilecast hit p50 ms",
        ],
    )
    with Processes(ctx.scratch / "latency") as procs:
        stack = harness.start_stack(
            procs,
            [ctx.image_dir],
            worker_concurrency=1,
            api_workers=1,
            api_threads=4,
            generation_ttl=0,
        )
        ids = {
            "pyramid": harness.add_source(stack, ctx.pyramid),
            "single": harness.add_source(stack, ctx.single),
        }
        paths = {"pyramid": ctx.pyramid, "single": ctx.single}
        metas = {name: harness.tile_metadata(stack, sid) for name, sid in ids.items()}
        client = stack.redis.client()
        registry = SourceRegistry(client)
        http = stack.http()
        li_source = ""
        for case_no, case in enumerate(CASES):
            meta = metas[case.image]
            source_id = ids[case.image]
            top = int(meta["levels"]) - 1
            z = top - case.levels_above_base
            tiles = pick_tiles(meta, z, 1 + samples * len(MODES), seed=case_no)
            warmup, tiles = tiles[0], tiles[1:]
            # Open the file in the worker and in large_image before the "file open" rows.
            reply = http.get(harness.tile_path(source_id, *warmup))
            if reply.status != 200:
                raise BenchError(f"warm-up tile -> {reply.status}: {reply.body[:300]!r}")
            for m, (mode, mode_label) in enumerate(MODES.items()):
                chosen = tiles[m * samples : (m + 1) * samples]
                miss: list[float] = []
                hit: list[float] = []
                reads: list[int] = []
                for tz, tx, ty in chosen:
                    if mode == "open_source":
                        harness.delete_keys(
                            client, f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*"
                        )
                    else:
                        registry.bump_generation(source_id)
                    before = harness.stats(stack)
                    path = harness.tile_path(source_id, tz, tx, ty)
                    start = time.perf_counter()
                    reply = http.get(path)
                    miss.append(time.perf_counter() - start)
                    if reply.status != 200:
                        raise BenchError(f"{path} -> {reply.status}: {reply.body[:300]!r}")
                    after = wait_rendered(stack, before)
                    rendered = after.get("tiles_rendered", 0) - before.get("tiles_rendered", 0)
                    if rendered != 1:
                        raise BenchError(f"{path}: {rendered} tiles rendered, expected a miss")
                    reads.append(after.get("raw_tiles_read", 0) - before.get("raw_tiles_read", 0))
                    start = time.perf_counter()
                    again = http.get(path)
                    hit.append(time.perf_counter() - start)
                    if again.status != 200 or again.body != reply.body:
                        raise BenchError(f"{path}: the hit differs from the miss")
                li = large_image_times(paths[case.image], mode, chosen, list(warmup))
                li_source = li["source"]
                lt = li["seconds"]
                print(
                    f"  latency z={z} {case.image} {mode}: tilecast p50 {ms(median(miss))} ms, "
                    f"large_image p50 {ms(median(lt))} ms",
                    flush=True,
                )
                section.rows.append(
                    [
                        case.label,
                        f"z={z} ({case.levels_above_base})",
                        f"{median(reads):.0f}",
                        mode_label,
                        f"{ms(median(miss))} / {ms(percentile(miss, 95))}",
                        f"{ms(median(lt))} / {ms(percentile(lt, 95))}",
                        f"{median(miss) / median(lt):.1f}",
                        ms(median(hit)),
                    ]
                )
        http.close()
    section.notes.append(
        f"large_image {li_source!r} tile source, `cache_backend` = `python`, caches cleared "
        "(`large_image.cache_util.cachesClear()`) before every sample, `icc_correction` off so "
        "native JPEG tiles pass through as in tilecast; both sides encode JPEG quality 95."
    )
    section.notes.append(
        "tilecast's api ran with `TILECAST_GENERATION_TTL=0` here so that a bumped generation "
        "is seen at once (one more Redis GET per request; irrelevant next to a render)."
    )
    return section
