"""Benchmark: the slide formats beside large_image's source for the same format.

For each format (files written by the tests' own writers, larger here): the cold-miss
latency of full-resolution native tiles (tilecast end to end over HTTP with one worker,
the file open, tiles not cached, as section 2 measures; large_image's ``getTile`` in its
own process with its caches cleared, through the source large_image uses for the format),
and bulk pre-rendering of every tile of every level (tilecast: a pre-rendering job on a
worker of ``WORKERS`` processes; large_image: ``WORKERS`` processes each asking
``getTile`` for its share of the same tiles), in tiles per second.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import harness
from tests.bench.bench_precache import precache
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms, percentile

WORKERS = 2
WIDTH, HEIGHT = 6144, 4608  # 24 x 18 full-resolution tiles, 7 levels
BULK_RUNS = 3  # bulk timings per side; the median is reported (the machine is noisy)


@dataclass(frozen=True)
class FormatCase:
    label: str
    file_name: str
    write: Callable[[Path], Any]
    large_image_source: str  # the large_image_source_* module large_image uses for it
    goal: float  # tilecast / large_image bulk tiles/s


def _svs_jpeg2000(path: Path) -> None:
    from tests.images_jpeg2000 import COMPRESSION_RGB, write_jp2k_svs

    write_jp2k_svs(path, COMPRESSION_RGB, WIDTH, HEIGHT)


def _jp2(path: Path) -> None:
    from tests.images_jpeg2000 import write_jp2

    write_jp2(path, WIDTH, HEIGHT, resolutions=6, tile=(1024, 1024))


def _philips(path: Path) -> None:
    from tests.slidewriters import write_philips

    write_philips(path, WIDTH, HEIGHT)


def _dicom(path: Path, *, jpeg2000: bool) -> None:
    """A series OrthancWSIDicomizer writes from a JPEG-tiled pyramidal TIFF: its JPEG
    tiles copied, or re-encoded as JPEG 2000 in instances of at most 1 MB. The instances
    are put beside ``path``, which is the first (full resolution), written last."""
    from tests import dicomslides

    work = path.parent / f"{path.stem}-work"
    tiff = dicomslides.pyramid_tiff(work / "source.tiff", WIDTH, HEIGHT)
    series = dicomslides.orthanc(tiff, work / "series", jpeg2000=jpeg2000)
    first, *others = dicomslides.instances(series)
    for index, instance in enumerate(others, start=1):
        instance.replace(path.with_name(f"{path.stem}-{index}.dcm"))
    first.replace(path)
    shutil.rmtree(work)


CASES = (
    FormatCase("Aperio SVS, JPEG 2000 tiles (33005)", "svs-jp2k.svs", _svs_jpeg2000,
               "openslide", 2.0),
    FormatCase("JPEG 2000 (.jp2, 1024-px codestream tiles)", "plain.jp2", _jp2, "openjpeg", 2.0),
    FormatCase("Philips TIFF (through OpenSlide)", "philips.tiff", _philips, "openslide", 2.0),
    FormatCase("DICOM WSI, JPEG frames (OrthancWSIDicomizer)", "dicom-jpeg.dcm",
               lambda path: _dicom(path, jpeg2000=False), "dicom", 5.0),
    FormatCase("DICOM WSI, JPEG 2000 frames (OrthancWSIDicomizer)", "dicom-j2k.dcm",
               lambda path: _dicom(path, jpeg2000=True), "dicom", 2.0),
)  # fmt: skip


def all_tiles(meta: dict[str, Any]) -> list[tuple[int, int, int]]:
    return [(z, x, y) for z in range(int(meta["levels"])) for x, y in harness.level_tiles(meta, z)]


def large_image_bulk(path: Path, source: str, tiles: list[tuple[int, int, int]]) -> float:
    """Seconds for ``WORKERS`` large_image processes to get every tile once (each its
    share, all at once): the wall time until the last ends."""
    spec = {"path": str(path), "mode": "bulk", "source": source}
    return side_bulk("tests.bench.largeimage_side", spec, tiles)[0]


def side_bulk(
    module: str,
    spec: dict[str, Any],
    tiles: Sequence[Any],
    *,
    key: str = "tiles",
    python: str = "",
    contiguous: bool = False,
) -> tuple[float, list[Any]]:
    """``WORKERS`` processes of ``module`` (harness.run_side, in ``python``) at once, each
    given ``spec`` with its share of ``tiles`` under ``key`` -- every WORKERS-th, or with
    ``contiguous`` one run of neighbours each -- : the wall seconds until the last ends,
    and each one's answer."""
    size = -(-len(tiles) // WORKERS)
    shares = [
        list(tiles[i * size : (i + 1) * size]) if contiguous else list(tiles[i::WORKERS])
        for i in range(WORKERS)
    ]
    results: list[Any] = [None] * WORKERS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        share = {**spec, key: shares[index]}
        try:
            results[index] = harness.run_side(module, share, timeout=3600, python=python)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WORKERS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start, results


def cold_misses(
    stack: harness.Stack,
    source_id: str,
    tiles: Sequence[Sequence[int]],
    hits: list[float] | None = None,
) -> list[float]:
    """Seconds for each tile ((z, x, y) or (z, x, y, frame)) over HTTP, asked alone with
    the source's tiles deleted from Redis first; with ``hits``, each is asked once more
    right after, and that answer's seconds (a cache hit: the HTTP floor) appended."""
    client = stack.redis.client()
    http = stack.http()
    seconds = []
    try:
        for z, x, y, *frame in tiles:
            harness.delete_keys(client, f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*")
            path = harness.tile_path(source_id, z, x, y, *frame)
            for times in [seconds] if hits is None else [seconds, hits]:
                start = time.perf_counter()
                reply = http.get(path)
                times.append(time.perf_counter() - start)
                if reply.status != 200:
                    raise BenchError(f"{path} -> {reply.status}: {reply.body[:300]!r}")
    finally:
        http.close()
    return seconds


def _cold_job(stack: harness.Stack, source_id: str, path: Path) -> tuple[float, int]:
    """Seconds and tiles of a pre-rendering job of the whole pyramid with nothing of it
    cached (rendered and unstyled tiles deleted first), the file already open."""
    harness.delete_keys(stack.redis.client(), f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*")
    seconds, job = precache(stack, source_id)
    if job["failed"]:
        raise BenchError(f"{path.name}: {job['failed']} tiles failed to pre-render")
    return seconds, int(job["total"])


def run(ctx: harness.BenchContext, *, samples: int = 20) -> Section:
    section = Section(
        title="9. Slide formats beside large_image's source for each format",
        measures=(
            f"Files of {WIDTH} x {HEIGHT} pixels written by the tests' own writers "
            "(tests/images_jpeg2000.py, tests/slidewriters.py, tests/dicomslides.py). *Cold miss*: "
            f"{samples} full-resolution tiles one after another, each in no cache, the file "
            "already open: tilecast end to end over HTTP (1 api process, 1 worker process: "
            "miss, task, read and decode, encode, Redis, answer); large_image's `getTile` in "
            "its own process (no HTTP) with its caches cleared before each, through the "
            "source named. *Bulk*: every tile of every level once; tilecast through a "
            f"pre-rendering job on {WORKERS} worker processes (tiles into Redis, JPEG Q 95); "
            f"large_image in {WORKERS} processes each asking `getTile` for half of the same "
            "tiles (its default encoding), wall time until both end. Both with the file "
            "already open (tilecast: after a first job that opened it in the pool, each timed "
            "job with the image's rendered and unstyled tiles deleted; large_image: opened "
            f"before its span); the median of {BULK_RUNS} timings per side. Same machine, "
            "same run."
        ),
        headers=[
            "format",
            "large_image source",
            "cold miss p50 / p95 ms tilecast",
            "cold miss p50 / p95 ms large_image",
            "tiles",
            "bulk tiles/s tilecast",
            "bulk tiles/s large_image",
            "bulk ratio (goal)",
        ],
    )
    folder = ctx.image_dir / "formats"
    folder.mkdir(parents=True, exist_ok=True)
    with Processes(ctx.scratch / "formats") as procs:
        stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=1, api_workers=1, api_threads=4,
            auto_precache=0,
        )  # fmt: skip
        bulk_stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=WORKERS, api_workers=1, api_threads=4,
            auto_precache=0,
        )  # fmt: skip
        for case in CASES:
            path = folder / f"{WIDTH}x{HEIGHT}-{case.file_name}"
            if not path.exists():
                print(f"  formats: writing {path.name}", flush=True)
                case.write(path)
            section.rows.append(_measure(case, path, stack, bulk_stack, samples))
            print(f"    {section.rows[-1]}", flush=True)
    return section


def _measure(
    case: FormatCase, path: Path, stack: harness.Stack, bulk_stack: harness.Stack, samples: int
) -> list[str]:
    source_id = harness.add_source(stack, path)
    meta = harness.tile_metadata(stack, source_id)
    top = int(meta["levels"]) - 1
    full = [(top, x, y) for x, y in harness.level_tiles(meta, top)]
    chosen = random.Random(0).sample(full, min(samples + 1, len(full)))
    warm, chosen = chosen[0], chosen[1:]
    cold_misses(stack, source_id, [warm])  # opens the file in the worker
    miss = cold_misses(stack, source_id, chosen)
    spec = {"path": str(path), "mode": "open_source", "tiles": chosen, "warmup": list(warm),
            "source": case.large_image_source}  # fmt: skip
    li = harness.run_side("tests.bench.largeimage_side", spec, timeout=600)["seconds"]
    tiles = all_tiles(meta)
    bulk_id = harness.add_source(bulk_stack, path)
    precache(bulk_stack, bulk_id)  # opens the file in the pool, as large_image's is open
    timed = [_cold_job(bulk_stack, bulk_id, path) for _ in range(BULK_RUNS)]
    seconds, total = median([s for s, _ in timed]), timed[0][1]
    li_seconds = median(
        [large_image_bulk(path, case.large_image_source, tiles) for _ in range(BULK_RUNS)]
    )
    rate, li_rate = total / seconds, len(tiles) / li_seconds
    return [
        case.label,
        case.large_image_source,
        f"{ms(median(miss))} / {ms(percentile(miss, 95))}",
        f"{ms(median(li))} / {ms(percentile(li, 95))}",
        f"{total}",
        f"{rate:.0f}",
        f"{li_rate:.0f}",
        f"**{rate / li_rate:.2f}** ({case.goal:g})",
    ]
