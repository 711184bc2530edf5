"""Benchmark: the microscopy formats beside large_image's zarr source and the format
libraries' own reads.

Two images written by the tests' own writers, every channel and plane a frame: an
OME-Zarr of 4 channels x 10 z-planes (tests/images_omezarr.py) and a CZI of 3 scenes x 2
channels with zstd subblocks (tests/cziwriter.py). Measured as section 9 measures the
slide formats (its helpers): the cold-miss latency of full-resolution tiles (tilecast end
to end over HTTP, one worker, the file open, tiles not cached), and bulk pre-rendering of
every tile of every level of every frame (tilecast: a pre-rendering job on ``WORKERS``
worker processes) in tiles per second. Beside it, the same tiles through

- large_image's zarr source (``large-image-source-zarr``, which pins zarr 2: run in the
  virtualenv of tests/zarrvenv.py) in ``WORKERS`` processes, ``getTile`` as in section 9;
  large_image has no CZI source but bioformats (Java), so it cannot open the CZI here;
- the format library reading each tile's pixels itself (tests/bench/direct_side.py:
  ``zarr`` slicing the level's array, ``pylibCZIrw`` reading the tile's area), in
  ``WORKERS`` processes: the floor under any server's reads, with no scaling or encoding.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import harness
from tests.bench.bench_formats import WORKERS, cold_misses, side_bulk
from tests.bench.bench_precache import precache
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms, percentile

FULL_SIDE, QUICK_SIDE = 4096, 1024  # pixels a side of every plane and scene
CHANNELS, PLANES = 4, 10
CHANNEL_NAMES = ("DAPI", "GFP", "TRITC", "Cy5")
ZARR_CHUNK = 512
CZI_SCENES, CZI_CHANNELS, CZI_SUBBLOCK, CZI_GAP = 3, 2, 1024, 256
CZI_COMPRESSION = "zstd1:ExplicitLevel=2;PreProcess=HiLoByteUnpack"
LARGE_IMAGE_SIDE = "tests.bench.largeimage_side"
DIRECT_SIDE = "tests.bench.direct_side"
GOAL = 2.0  # tilecast / large_image bulk tiles/s

Tile = tuple[int, int, int, int]  # z, x, y, frame


@dataclass(frozen=True)
class Case:
    label: str
    file_name: str
    write: Callable[[Path, int], Path]  # (path, side) -> the path registered
    block: int  # pixels a side of the stored unit (chunk, subblock): one cold sample each
    library: str  # direct_side's library
    library_label: str
    reads: Callable[[Path, dict[str, Any], list[Tile]], list[dict[str, Any]]]
    large_image_source: str | None  # None: large_image cannot open the format here


# -- OME-Zarr -------------------------------------------------------------------------------


def _zarr_factors(side: int) -> tuple[int, ...]:
    """Halving datasets down to one chunk: every level tilecast serves is stored."""
    factors = [1]
    while side // factors[-1] > ZARR_CHUNK:
        factors.append(factors[-1] * 2)
    return tuple(factors)


def _write_omezarr(path: Path, side: int) -> Path:
    import numcodecs

    from tests.images_omezarr import Spec, write_by_plane

    spec = Spec(
        "benchmark", "czyx", (CHANNELS, PLANES, side, side), "uint16",
        (1, 1, ZARR_CHUNK, ZARR_CHUNK), "0.4", "zarr", factors=_zarr_factors(side),
        channel_names=CHANNEL_NAMES,
        # ome-zarr-py's default compressor for NGFF 0.4.
        options={"compressors": numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE)},
    )  # fmt: skip
    return write_by_plane(path, spec)


def _zarr_reads(path: Path, meta: dict[str, Any], tiles: list[Tile]) -> list[dict[str, Any]]:
    """Each tile as a slice of the store's dataset for its level, from the store's own
    NGFF metadata: tile size and frames (c fastest) as tilecast and large_image agree."""
    import zarr

    multiscale = zarr.open_group(str(path), mode="r").attrs["multiscales"][0]
    axes = [axis["name"] for axis in multiscale["axes"]]
    datasets = [dataset["path"] for dataset in multiscale["datasets"]]
    levels, size = int(meta["levels"]), int(meta["tileWidth"])
    if len(datasets) < levels:
        raise BenchError(f"{path.name}: {len(datasets)} datasets for {levels} levels")
    frames = meta.get("frames") or [{}]
    reads = []
    for z, x, y, frame in tiles:
        step = 2 ** (levels - 1 - z)
        width, height = -(-int(meta["sizeX"]) // step), -(-int(meta["sizeY"]) // step)
        spans = {
            "x": [x * size, min(width, (x + 1) * size)],
            "y": [y * size, min(height, (y + 1) * size)],
        }
        for axis in ("c", "z", "t"):
            index = int(frames[frame].get(f"Index{axis.upper()}", 0))
            spans[axis] = [index, index + 1]
        reads.append(
            {"array": datasets[levels - 1 - z], "selection": [spans[axis] for axis in axes]}
        )
    return reads


# -- CZI ------------------------------------------------------------------------------------


def _write_czi(path: Path, side: int) -> Path:
    import numpy as np

    from tests.cziwriter import Scene, write_czi
    from tests.images_omezarr import picture

    scenes = []
    for number in range(CZI_SCENES):
        scene = Scene(number * (side + CZI_GAP), 0, side, side)
        for channel in range(CZI_CHANNELS):
            unit = picture(side, side, number * CZI_CHANNELS + channel)
            scene.planes[(channel, 0, 0)] = (unit * 65535).astype(np.uint16)
        scenes.append(scene)
    return write_czi(
        path, scenes, compression=CZI_COMPRESSION, channel_names=CHANNEL_NAMES[:CZI_CHANNELS],
        scale_m=0.25e-6, subblock=CZI_SUBBLOCK,
    )  # fmt: skip


def _czi_reads(path: Path, meta: dict[str, Any], tiles: list[Tile]) -> list[dict[str, Any]]:
    """Each tile as one libCZI read of its area at its level's zoom, the scene's own
    rectangle from the file (frames: C fastest, then Z, T, scene)."""
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(path)) as document:
        rects = dict(document.scenes_bounding_rectangle_no_pyramid)
    scene_ids = sorted(rects)
    levels, size = int(meta["levels"]), int(meta["tileWidth"])
    frames = meta.get("frames") or [{}]
    reads = []
    for z, x, y, frame in tiles:
        info = frames[frame]
        scene = scene_ids[int(info.get("IndexXY", 0))]
        rect, step = rects[scene], 2 ** (levels - 1 - z)
        x0, y0 = x * size * step, y * size * step
        width, height = min(size * step, rect.w - x0), min(size * step, rect.h - y0)
        if width <= 0 or height <= 0:
            raise BenchError(f"{path.name}: tile {z}/{x}/{y} of frame {frame} is off its scene")
        plane = {axis: int(info.get(f"Index{axis}", 0)) for axis in ("C", "Z", "T")}
        reads.append(
            {"roi": [rect.x + x0, rect.y + y0, width, height], "plane": plane,
             "scene": scene, "zoom": 1.0 / step}
        )  # fmt: skip
    return reads


CASES = (
    Case(
        f"OME-Zarr (NGFF 0.4, zarr v2): {CHANNELS} channels x {PLANES} z, uint16, chunks "
        f"{ZARR_CHUNK}, Blosc zstd", "omezarr-czyx.zarr", _write_omezarr, ZARR_CHUNK,
        "zarr", "zarr 3 (slicing the level's array)", _zarr_reads, "zarr",
    ),
    Case(
        f"CZI: {CZI_SCENES} scenes x {CZI_CHANNELS} channels, uint16, zstd subblocks of "
        f"{CZI_SUBBLOCK}", "scenes.czi", _write_czi, CZI_SUBBLOCK,
        "czi", "pylibCZIrw (reading the tile's area)", _czi_reads, None,
    ),
)  # fmt: skip


# -- measuring ------------------------------------------------------------------------------


def frame_tiles(meta: dict[str, Any], levels: range | None = None) -> list[Tile]:
    """Every tile of ``levels`` (all by default) of every frame, frame by frame, each
    level row by row."""
    frames = len(meta.get("frames") or [None])
    levels = levels if levels is not None else range(int(meta["levels"]))
    return [
        (z, x, y, frame)
        for frame in range(frames)
        for z in levels
        for x, y in harness.level_tiles(meta, z)
    ]


def cold_samples(meta: dict[str, Any], block: int, count: int) -> list[Tile]:
    """``count`` full-resolution tiles of any frame, at most one per stored unit of
    ``block`` pixels a side per frame, so no sample finds another's unit decoded."""
    top = int(meta["levels"]) - 1
    size = int(meta["tileWidth"])
    candidates = frame_tiles(meta, range(top, top + 1))
    random.Random(0).shuffle(candidates)
    units: dict[tuple[int, int, int], Tile] = {}
    for tile in candidates:
        units.setdefault((tile[3], tile[1] * size // block, tile[2] * size // block), tile)
    return list(units.values())[:count]


def run(ctx: harness.BenchContext, *, samples: int = 20) -> Section:
    side = QUICK_SIDE if ctx.quick else FULL_SIDE
    section = Section(
        title="10. Microscopy formats beside large_image's zarr source and the format libraries",
        measures=(
            f"Planes and scenes of {side} x {side} pixels written by the tests' own writers "
            "(tests/images_omezarr.py with `zarr`, tests/cziwriter.py with `pylibCZIrw`), "
            "every channel, z-plane and scene a frame. *Cold miss*: up to "
            f"{samples} full-resolution tiles of any frame one after another, each in no "
            "cache and in a chunk or subblock no other sample reads, the file already open: "
            "tilecast end to end over HTTP (1 api process, 1 worker process: miss, task, "
            "read and decode, scale to 8 bits, encode, Redis, answer); large_image's "
            "`getTile` in its own process (no HTTP) with its caches cleared before each; "
            "the format library's own read of the tile's pixels (decoded, nothing more). "
            "*Bulk*: every tile of every level of every frame once; tilecast through a "
            f"pre-rendering job on {WORKERS} worker processes (tiles into Redis, JPEG Q 95; "
            "from the POST to the job's end); large_image in "
            f"{WORKERS} processes each asking `getTile` for half of the same tiles (its "
            "default JPEG), the library in "
            f"{WORKERS} processes each reading half of the same tiles' pixels; both timed "
            "from their first tile to their last (interpreter start, imports and opening the "
            "file not counted: in their favour), the slower of the two. Same machine, same run."
        ),
        headers=[
            "image",
            "tiles (frames)",
            "cold miss p50 / p95 ms: tilecast",
            "large_image",
            "format library",
            "bulk tiles/s: tilecast",
            "large_image",
            "format library",
            f"tilecast / large_image (goal {GOAL:g})",
            "tilecast / format library",
        ],
    )
    folder = ctx.image_dir / "microscopy"
    folder.mkdir(parents=True, exist_ok=True)
    from tests import zarrvenv

    zarr_python = str(zarrvenv.ensure())
    with Processes(ctx.scratch / "microscopy") as procs:
        stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=1, api_workers=1, api_threads=4,
        )  # fmt: skip
        bulk_stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=WORKERS, api_workers=1, api_threads=4,
        )  # fmt: skip
        for case in CASES:
            path = folder / f"{side}-{case.file_name}"
            if not path.exists():
                print(f"  microscopy: writing {path.name}", flush=True)
                case.write(path, side)
            row, notes = _measure(case, path, stack, bulk_stack, samples, zarr_python)
            section.rows.append(row)
            section.notes.extend(notes)
            print(f"    {row}", flush=True)
    section.notes.append(
        "large_image cannot open the CZI here: its only CZI path is the bioformats source, "
        "which needs Java; the CZI is compared with pylibCZIrw's own reads only."
    )
    return section


def _measure(
    case: Case,
    path: Path,
    stack: harness.Stack,
    bulk_stack: harness.Stack,
    samples: int,
    zarr_python: str,
) -> tuple[list[str], list[str]]:
    source_id = harness.add_source(stack, path)
    meta = harness.tile_metadata(stack, source_id)
    warm, *chosen = cold_samples(meta, case.block, samples + 1)
    cold_misses(stack, source_id, [warm])  # opens the file in the worker
    miss = cold_misses(stack, source_id, chosen)
    tiles = frame_tiles(meta)
    reads = case.reads(path, meta, tiles)
    by_tile = dict(zip(tiles, reads, strict=True))
    library = {"library": case.library, "path": str(path)}
    direct = harness.run_side(
        DIRECT_SIDE,
        {**library, "mode": "open_source", "reads": [by_tile[t] for t in chosen],
         "warmup": by_tile[warm]},
        timeout=600,
    )["seconds"]  # fmt: skip
    li: list[float] = []
    if case.large_image_source:
        spec = {"path": str(path), "mode": "open_source", "tiles": chosen, "warmup": warm,
                "source": case.large_image_source}  # fmt: skip
        li = harness.run_side(LARGE_IMAGE_SIDE, spec, timeout=600, python=zarr_python)["seconds"]

    from tilecast.workers.sources.czi import SUBBLOCK_CACHE_BYTES

    bulk_id = harness.add_source(bulk_stack, path)
    seconds, job = precache(bulk_stack, bulk_id, {"frames": "all"})
    if job["failed"]:
        raise BenchError(f"{path.name}: {job['failed']} tiles failed to pre-render")
    if job["total"] != len(tiles):
        raise BenchError(f"{path.name}: the job rendered {job['total']} tiles, not {len(tiles)}")
    rate = len(tiles) / seconds
    _, answers = side_bulk(
        DIRECT_SIDE, {**library, "mode": "bulk", "cache_bytes": SUBBLOCK_CACHE_BYTES}, reads,
        key="reads", contiguous=True,
    )  # fmt: skip
    direct_rate = len(tiles) / max(answer["seconds"][0] for answer in answers)
    li_rate = 0.0
    if case.large_image_source:
        spec = {"path": str(path), "mode": "bulk", "source": case.large_image_source}
        _, answers = side_bulk(LARGE_IMAGE_SIDE, spec, tiles, python=zarr_python, contiguous=True)
        li_rate = len(tiles) / max(answer["seconds"][0] for answer in answers)
    frames = len(meta.get("frames") or [None])
    cannot = "cannot open it"
    row = [
        case.label,
        f"{len(tiles)} ({frames})",
        f"{ms(median(miss))} / {ms(percentile(miss, 95))}",
        f"{ms(median(li))} / {ms(percentile(li, 95))}" if li else cannot,
        f"{ms(median(direct))} / {ms(percentile(direct, 95))}",
        f"{rate:.0f}",
        f"{li_rate:.0f}" if li_rate else cannot,
        f"{direct_rate:.0f}",
        f"**{rate / li_rate:.2f}**" if li_rate else "-",
        f"{rate / direct_rate:.2f}",
    ]
    notes = [
        f"{case.label}: {len(chosen)} cold samples; the format library is "
        f"{case.library_label}; tilecast's job took {seconds:.1f} s."
    ]
    if li_rate:
        verdict = "met" if rate / li_rate >= GOAL else "NOT met"
        notes.append(f"Goal tilecast >= {GOAL:g}x large_image ({case.label}): {verdict}.")
    return row, notes
