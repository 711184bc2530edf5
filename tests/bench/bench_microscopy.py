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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import harness
from tests.bench.bench_formats import WORKERS, cold_misses, side_bulk
from tests.bench.bench_hits import cpu_seconds
from tests.bench.bench_precache import precache
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms, percentile
from tilecast import procs as tc_procs
from tilecast.workers.sources.czi import SUBBLOCK_CACHE_BYTES

FULL_SIDE, QUICK_SIDE = 4096, 1024  # pixels a side of every plane and scene
CHANNELS, PLANES = 4, 10
CHANNEL_NAMES = ("DAPI", "GFP", "TRITC", "Cy5")
ZARR_CHUNK = 512
CZI_SCENES, CZI_CHANNELS, CZI_SUBBLOCK, CZI_GAP = 3, 2, 1024, 256
CZI_COMPRESSION = "zstd1:ExplicitLevel=2;PreProcess=HiLoByteUnpack"
LARGE_IMAGE_SIDE = "tests.bench.largeimage_side"
DIRECT_SIDE = "tests.bench.direct_side"
GOAL = 2.0  # tilecast / large_image bulk tiles/s
SPLIT_TILES = 256  # full-resolution tiles whose read and encode CPU are measured apart

Tile = tuple[int, int, int, int]  # z, x, y, frame


@dataclass(frozen=True)
class Case:
    name: str  # short, for the notes
    label: str
    file_name: str
    write: Callable[[Path, int], Path]  # (path, side) -> the path registered
    block: int  # pixels a side of the stored unit (chunk, subblock): one cold sample each
    library: str  # direct_side's library
    library_label: str
    reads: Callable[[Path, dict[str, Any], list[Tile]], list[dict[str, Any]]]
    large_image_source: str | None  # None: large_image cannot open the format here
    # CPU ms per tile of decompressing the tiles' stored units alone with the format's
    # own codec (the floor under any reader's read), when it can be measured apart.
    codec_cpu: Callable[[Path, list[Tile]], float] | None = None


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


def _zarr_codec_cpu(path: Path, tiles: list[Tile]) -> float:
    """CPU ms per tile of the compressor's ``decode`` on the stored chunk of each
    full-resolution tile (one chunk a tile here), the chunk's bytes read beforehand."""
    import numpy as np
    import zarr

    dataset = zarr.open_group(str(path), mode="r").attrs["multiscales"][0]["datasets"][0]
    folder = path / dataset["path"]
    array = zarr.open_array(str(folder), mode="r")
    compressor = array.metadata.compressor
    chunk = (CHANNELS, PLANES)  # frames: channels fastest, then z
    stored = []
    for _z, x, y, frame in tiles:
        coords = (frame % chunk[0], frame // chunk[0], y, x)
        stored.append((folder / array.metadata.encode_chunk_key(coords)).read_bytes())
    # Into one buffer: what the decompression costs, not a fresh 512 KiB allocation's
    # page faults (a worker's heap, long grown, has ~0 a tile).
    out = np.empty(array.chunks, dtype=array.dtype)
    start = time.process_time()
    for data in stored:
        compressor.decode(data, out)
    return 1000 * (time.process_time() - start) / len(tiles)


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
        "OME-Zarr",
        f"OME-Zarr (NGFF 0.4, zarr v2): {CHANNELS} channels x {PLANES} z, uint16, chunks "
        f"{ZARR_CHUNK}, Blosc zstd", "omezarr-czyx.zarr", _write_omezarr, ZARR_CHUNK,
        "zarr", "zarr 3 (slicing the level's array)", _zarr_reads, "zarr", _zarr_codec_cpu,
    ),
    Case(
        "CZI",
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


@dataclass
class Bulk:
    """One side's bulk runs: tiles/s and CPU milliseconds per tile, per round."""

    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    # tilecast only: CPU ms per tile of each part of the stack (STACK_PARTS), per round.
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self, tiles: int, seconds: float, cpu_seconds: float, parts: dict[str, float] | None = None
    ) -> None:
        self.rates.append(tiles / seconds)
        self.cpu_ms.append(1000 * cpu_seconds / tiles)
        for name, part in (parts or {}).items():
            self.parts.setdefault(name, []).append(1000 * part / tiles)


def run(ctx: harness.BenchContext, *, samples: int = 20, rounds: int = 5) -> Section:
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
            "Each tilecast miss is asked again at once: a cache hit, the HTTP floor under "
            "every miss. "
            "*Bulk*: every tile of every level of every frame once; tilecast through a "
            f"pre-rendering job on {WORKERS} worker processes (the bulk pool at normal "
            "priority, `TILECAST_BULK_NICE=0`; tiles into Redis, JPEG Q 95; from the POST "
            "to the job's end; the source's tiles deleted from Redis before each run, the "
            f"file kept open); large_image in {WORKERS} processes each asking `getTile` for "
            f"half of the same tiles (its default JPEG, Q 95); the library in {WORKERS} "
            "processes each reading half of the same tiles' pixels; those two timed from "
            "their first tile to their last (interpreter start, imports and opening the file "
            "not counted: in their favour), the slower process's time. "
            f"{rounds} rounds, the sides' order rotating; tiles/s are medians over rounds, "
            "ratios medians of the per-round ratios. *CPU ms per tile*: the CPU time the side "
            "used over its tiles (tilecast: every process of the stack -- worker pool and "
            "parent, api, Redis; the others: their processes in the timed span), median over "
            "rounds: what a tile costs, which the machine's other load moves much less than "
            "tiles/s. Same machine, same run."
        ),
        headers=[
            "image",
            "tiles (frames)",
            "cold miss p50 / p95 ms: tilecast",
            "large_image",
            "format library",
            "tilecast hit p50 ms (the HTTP floor under its misses)",
            "bulk tiles/s: tilecast",
            "large_image",
            "format library",
            f"tilecast / large_image (goal {GOAL:g})",
            "tilecast / format library",
            "CPU ms per tile: tilecast",
            "large_image",
            "format library",
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
        # The bulk pool at normal priority, as the other sides run (section 4 does the same).
        bulk_stack = harness.start_stack(
            procs, [ctx.image_dir], worker_concurrency=WORKERS, api_workers=1, api_threads=4,
            bulk_nice=0,
        )  # fmt: skip
        for case in CASES:
            path = folder / f"{side}-{case.file_name}"
            if not path.exists():
                print(f"  microscopy: writing {path.name}", flush=True)
                case.write(path, side)
            measured = _Measure(case, path, zarr_python)
            row = measured.run(stack, bulk_stack, samples, rounds)
            section.rows.append(row)
            section.notes.extend(measured.notes)
            print(f"    {row}", flush=True)
    section.notes.append(
        "large_image cannot open the CZI here: its only CZI path is the bioformats source, "
        "which needs Java; the CZI is compared with pylibCZIrw's own reads only."
    )
    return section


def tile_cpu(path: Path, tiles: list[Tile]) -> tuple[float, float]:
    """CPU milliseconds per tile of tilecast's reader (``read_tile``) and of encoding the
    tile as a pre-rendering job does (JPEG at the default quality), called here in one
    thread on ``tiles`` of a freshly opened source."""
    from tilecast.common.encoding import EncodingOptions
    from tilecast.common.settings import Settings
    from tilecast.workers.encode import encode_tile
    from tilecast.workers.sources import open_source

    settings = Settings()
    options = EncodingOptions(jpeg_quality=settings.jpeg_quality)
    read = encode = 0.0
    with open_source(str(path), settings) as source:
        for tile in tiles:
            start = time.process_time()
            raw = source.read_tile(*tile)
            middle = time.process_time()
            encode_tile(raw, options)
            read, encode = read + middle - start, encode + time.process_time() - middle
    return 1000 * read / len(tiles), 1000 * encode / len(tiles)


STACK_PARTS = ("pool", "worker parent", "api", "Redis")


def _worker_roles(worker: int) -> dict[str, list[int]]:
    """The worker's processes by role: its pool (the processes with no children, which
    render) and the rest (the command, Celery's consumer and the job driver)."""
    tree = {worker, *tc_procs.descendants(worker)}
    parents = {pid: _parent(pid) for pid in tree}
    leaves = [pid for pid in tree if pid not in parents.values()]
    return {"pool": leaves, "worker parent": [pid for pid in tree if pid not in leaves]}


def _parent(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text[text.rfind(")") + 2 :].split()[1])


class _Measure:
    """One case's cold misses and bulk rounds on every side."""

    def __init__(self, case: Case, path: Path, zarr_python: str) -> None:
        self.case = case
        self.path = path
        self.zarr_python = zarr_python
        self.library = {"library": case.library, "path": str(path)}
        self.notes: list[str] = []
        self.split = (0.0, 0.0)  # tilecast's read and encode CPU ms per tile
        self.codec: float | None = None  # the format's codec alone, CPU ms per tile

    def run(
        self, stack: harness.Stack, bulk_stack: harness.Stack, samples: int, rounds: int
    ) -> list[str]:
        case, path = self.case, self.path
        source_id = harness.add_source(stack, path)
        meta = harness.tile_metadata(stack, source_id)
        tiles = frame_tiles(meta)
        by_tile = dict(zip(tiles, case.reads(path, meta, tiles), strict=True))
        warm, *chosen = cold_samples(meta, case.block, samples + 1)
        cold_misses(stack, source_id, [warm])  # opens the file in the worker
        hits: list[float] = []
        miss = cold_misses(stack, source_id, chosen, hits)
        spec = {**self.library, "mode": "open_source", "warmup": by_tile[warm],
                "reads": [by_tile[tile] for tile in chosen]}  # fmt: skip
        direct = harness.run_side(DIRECT_SIDE, spec, timeout=600)["seconds"]
        li: list[float] = []
        if case.large_image_source:
            spec = {"path": str(path), "mode": "open_source", "tiles": chosen, "warmup": warm,
                    "source": case.large_image_source}  # fmt: skip
            li = harness.run_side(LARGE_IMAGE_SIDE, spec, timeout=600, python=self.zarr_python)[
                "seconds"
            ]

        top = int(meta["levels"]) - 1
        split_tiles = [tile for tile in tiles if tile[0] == top][:SPLIT_TILES]
        self.split = tile_cpu(path, split_tiles)
        self.codec = case.codec_cpu(path, split_tiles) if case.codec_cpu else None
        bulk_id = harness.add_source(bulk_stack, path)
        sides: dict[str, Callable[[], tuple[Any, ...]]] = {
            "tilecast": lambda: self._tilecast(bulk_stack, bulk_id, len(tiles)),
            "library": lambda: self._side(DIRECT_SIDE, "reads", [by_tile[t] for t in tiles]),
        }
        if case.large_image_source:
            sides["large_image"] = lambda: self._side(LARGE_IMAGE_SIDE, "tiles", tiles)
        bulk = {name: Bulk() for name in sides}
        names = list(sides)
        for number in range(rounds):
            for name in names[number % len(names) :] + names[: number % len(names)]:
                bulk[name].add(len(tiles), *sides[name]())
        return self._row(meta, tiles, (miss, hits), li, direct, bulk)

    def _tilecast(
        self, stack: harness.Stack, source_id: str, count: int
    ) -> tuple[float, float, dict[str, float]]:
        """One pre-rendering job of every frame: its seconds, the CPU seconds of the
        whole stack (worker pool and parent, api, Redis) while it ran, and those by part
        (STACK_PARTS)."""
        client = stack.redis.client()
        harness.delete_keys(client, f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*")
        assert stack.worker is not None and stack.api is not None
        roles = _worker_roles(stack.worker.proc.pid)
        roles["api"] = [stack.api.proc.pid]
        roles["Redis"] = [int(client.info("server")["process_id"])]
        before = {role: cpu_seconds(pids) for role, pids in roles.items()}
        seconds, job = precache(stack, source_id, {"frames": "all"})
        parts = {role: cpu_seconds(pids) - before[role] for role, pids in roles.items()}
        if job["failed"]:
            raise BenchError(f"{self.path.name}: {job['failed']} tiles failed to pre-render")
        if job["total"] != count:
            raise BenchError(f"{self.path.name}: the job made {job['total']} tiles, not {count}")
        return seconds, sum(parts.values()), parts

    def _side(self, module: str, key: str, items: list[Any]) -> tuple[float, float]:
        """``WORKERS`` processes of a side over ``items``: the slower one's span, and
        their CPU seconds together."""
        if module == LARGE_IMAGE_SIDE:
            spec = {"path": str(self.path), "mode": "bulk", "source": self.case.large_image_source}
            python = self.zarr_python
        else:
            spec = {**self.library, "mode": "bulk", "cache_bytes": SUBBLOCK_CACHE_BYTES}
            python = ""
        _, answers = side_bulk(module, spec, items, key=key, python=python, contiguous=True)
        span = max(answer["seconds"][0] for answer in answers)
        return span, sum(answer["cpu"] for answer in answers)

    def _row(
        self,
        meta: dict[str, Any],
        tiles: list[Tile],
        tilecast: tuple[list[float], list[float]],
        li: list[float],
        direct: list[float],
        bulk: dict[str, Bulk],
    ) -> list[str]:
        case = self.case
        cannot = "cannot open it"

        def cold(values: list[float]) -> str:
            return f"{ms(median(values))} / {ms(percentile(values, 95))}" if values else cannot

        def rate(name: str) -> str:
            return f"{median(bulk[name].rates):.0f}" if name in bulk else cannot

        def ratio(name: str) -> float:
            pairs = zip(bulk["tilecast"].rates, bulk[name].rates, strict=True)
            return median([mine / theirs for mine, theirs in pairs])

        def cpu(name: str) -> str:
            return f"{median(bulk[name].cpu_ms):.2f}" if name in bulk else cannot

        frames = len(meta.get("frames") or [None])
        li_ratio = ratio("large_image") if "large_image" in bulk else None
        row = [
            case.label,
            f"{len(tiles)} ({frames})",
            cold(tilecast[0]),
            cold(li),
            cold(direct),
            ms(median(tilecast[1])),
            rate("tilecast"),
            rate("large_image"),
            rate("library"),
            f"**{li_ratio:.2f}**" if li_ratio is not None else "-",
            f"{ratio('library'):.2f}",
            cpu("tilecast"),
            cpu("large_image"),
            cpu("library"),
        ]
        spread = ", ".join(
            f"{name} {min(b.rates):.0f}-{max(b.rates):.0f}" for name, b in bulk.items()
        )
        self.notes.append(
            f"{case.name}: {len(tilecast[0])} cold samples; the format library is "
            f"{case.library_label}; bulk tiles/s over the rounds: {spread}."
        )
        self.notes.append(self._where(bulk["tilecast"]))
        if li_ratio is not None:
            self.notes.append(self._verdict(li_ratio, bulk))
        return row

    def _where(self, tilecast: Bulk) -> str:
        """Where tilecast's CPU per tile goes: the stack's parts in bulk, and in one
        thread the reader's read (the codec alone, where measured) and the encoding."""
        read, encode = self.split
        parts = ", ".join(
            f"{name} {median(tilecast.parts[name]):.2f}"
            for name in STACK_PARTS
            if name in tilecast.parts
        )
        codec = (
            f" (of which decompressing the stored chunk with the store's own compressor "
            f"{self.codec:.2f} ms)"
            if self.codec is not None
            else ""
        )
        return (
            f"{self.case.name}: where tilecast's CPU per tile goes -- in bulk "
            f"{median(tilecast.cpu_ms):.2f} ms per tile, all levels and the whole stack "
            f"counted: {parts} (the pool renders; its parent is Celery's consumer and the "
            f"job driver); in one thread of the benchmark's process, per full-resolution "
            f"tile (the first {SPLIT_TILES}, frame by frame), the reader's `read_tile` "
            f"{read:.2f} ms{codec} and the JPEG encoding {encode:.2f} ms; the pool's rest "
            "is the job's bookkeeping, the Redis client and Celery."
        )

    def _verdict(self, li_ratio: float, bulk: dict[str, Bulk]) -> str:
        """The goal, met or not, with what it would take in CPU per tile."""
        verdict = "met" if li_ratio >= GOAL else "NOT met"
        mine, theirs = median(bulk["tilecast"].cpu_ms), median(bulk["large_image"].cpu_ms)
        text = (
            f"{self.case.name}: goal tilecast >= {GOAL:g}x large_image's bulk tiles/s: "
            f"{li_ratio:.2f}, {verdict}; per tile, large_image used {theirs / mine:.2f}x "
            "tilecast's CPU."
        )
        if li_ratio < GOAL and self.codec is not None:
            floor = self.codec + self.split[1]
            text += (
                f" On the same cores {GOAL:g}x its tiles/s needs about {theirs / GOAL:.2f} "
                f"ms per tile for the whole stack; decompressing a chunk and encoding its "
                f"JPEG alone (the same libraries large_image uses) take {floor:.2f} ms, "
                f"which leaves {theirs / GOAL - floor:.2f} ms for reading the file, the "
                "8-bit scaling, the job, Redis and the api."
            )
        return text
