"""Benchmark: the OME-Zarr and DICOMweb views beside the tiles they are made of.

One stack (one api process, one worker process) serves the demo pyramidal JPEG TIFF. For
the same full-resolution tiles (x, y) it asks, each in no cache: the JPEG tile
(``/tiles/zxy``), the zarr chunk (``/zarr/{id}/0/0/{y}/{x}``: raw uint8 bands, zlib) and the
DICOMweb frame (``.../frames/{n}``: the tile's JPEG in a multipart answer); then, all
cached, wrk drives each kind alone over the same paths: requests per second from cache.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.bench import harness
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms, percentile
from tests.bench.wrk import run_wrk
from tilecast.common.dicomuids import instance_uid, series_uid, study_uid

COLD_SAMPLES = 20
HIT_TILES = 256


def _paths(source: str, generation: int, levels: int, tiles: list[tuple[int, int]],
           across: int) -> dict[str, list[str]]:  # fmt: skip
    top = levels - 1
    study, series = study_uid(source, generation), series_uid(source, generation, 0)
    instance = instance_uid(source, generation, 0, top)
    frames = f"/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames"
    return {
        "JPEG tile": [harness.tile_path(source, top, x, y) for x, y in tiles],
        "zarr chunk": [f"/zarr/{source}/0/0/{y}/{x}" for x, y in tiles],
        "DICOMweb frame": [f"{frames}/{y * across + x + 1}" for x, y in tiles],
    }


def _cold(stack: harness.Stack, source: str, paths: dict[str, list[str]]) -> dict[str, list[float]]:
    """Seconds of each path asked with nothing of the source cached (tiles, raw tiles and
    chunks deleted first), the kinds taking turns."""
    client = stack.redis.client()
    http = stack.http()
    seconds: dict[str, list[float]] = {kind: [] for kind in paths}
    try:
        for index in range(len(next(iter(paths.values())))):
            for kind, kind_paths in paths.items():
                harness.delete_keys(client, f"tc:*:{source}:*")
                start = time.perf_counter()
                reply = http.get(kind_paths[index])
                seconds[kind].append(time.perf_counter() - start)
                if reply.status != 200:
                    raise BenchError(f"{kind_paths[index]} -> {reply.status}: {reply.body[:200]!r}")
    finally:
        http.close()
    return seconds


def run(ctx: harness.BenchContext, *, seconds: float = 8.0) -> Section:
    section = Section(
        title="12. Exports: OME-Zarr chunks and DICOMweb frames beside tiles",
        measures=(
            f"The demo pyramidal JPEG TIFF ({ctx.pyramid.name}), one api process (granian, "
            "32 threads) and one worker process. *Cold*: "
            f"{COLD_SAMPLES} full-resolution tiles (x, y), each asked as a JPEG tile, as the zarr "
            "chunk holding it (raw uint8 bands, zlib level 1: the worker decodes the JPEG and "
            "compresses) and as the DICOMweb frame holding it (the file's JPEG tile, "
            "passed through, in a multipart answer), each with nothing of the image cached, "
            "over one keep-alive connection. *From cache*: the same kinds over "
            f"{HIT_TILES} cached tiles, wrk with 32 connections for {seconds:g} s per kind."
        ),
        headers=["kind", "cold p50 / p95 ms", "from cache req/s", "mean answer bytes"],
    )
    with Processes(ctx.scratch / "exports") as procs:
        stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=1, api_workers=1, api_threads=32,
            auto_precache=0,
        )  # fmt: skip
        source = harness.add_source(stack, ctx.pyramid)
        meta = harness.tile_metadata(stack, source)
        levels = int(meta["levels"])
        full = harness.level_tiles(meta, levels - 1)
        across = max(x for x, _ in full) + 1
        rng = random.Random(0)
        generation = harness.generation(stack, source)
        cold = _cold(stack, source, _paths(source, generation, levels,
                                           rng.sample(full, COLD_SAMPLES), across))  # fmt: skip
        hot = _paths(source, generation, levels, rng.sample(full, HIT_TILES), across)
        http = stack.http()
        try:
            for kind_paths in hot.values():
                for path in kind_paths:
                    http.get(path)  # rendered and cached before the timed runs
        finally:
            http.close()
        for kind, kind_paths in hot.items():
            paths_file = Path(procs.scratch) / "exports-paths.txt"
            paths_file.write_text("\n".join(kind_paths) + "\n")
            result = run_wrk(ctx.wrk, stack.api_port, paths_file, seconds=seconds, connections=32)
            if result.error_count:
                raise BenchError(f"{kind}: wrk errors {result.errors}")
            section.rows.append([
                kind,
                f"{ms(median(cold[kind]))} / {ms(percentile(cold[kind], 95))}",
                f"{result.rps:,.0f}",
                f"{result.bytes / max(1, result.requests):,.0f}",
            ])  # fmt: skip
            print(f"    {section.rows[-1]}", flush=True)
    return section
