"""Benchmark: pre-rendering a whole pyramid into the cache, beside ``vips dzsave``.

One tilecast stack (a Celery worker with 2 pool processes, one api) pre-renders every
tile of every level of an image through ``POST /item/{id}/tiles/precache`` (the job
driver, ``tilecast.precache_batch`` tasks on the bulk queue, tiles written into Redis);
the time is from the POST to the job's end as ``GET /jobs/{id}`` reports it. On the same
machine, in the same run, libvips' ``dzsave`` writes the same image as a DeepZoom pyramid
of 256-pixel JPEG tiles (``depth=onetile``: the same levels) to a local disk with all
cores. Both for a pyramidal JPEG TIFF (tilecast passes the file's own JPEG tiles through)
and a single-level TIFF of the same pixels (every coarser level synthesized).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import harness
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section

WORKERS = 2
FULL_SIZE = (40000, 30000)
JOB_TIMEOUT = 3600.0

_DZSAVE = """
import sys, time, pyvips
image = pyvips.Image.new_from_file(sys.argv[1], access="sequential")
start = time.perf_counter()
image.dzsave(sys.argv[2], tile_size=256, overlap=0, depth="onetile", suffix=".jpg[Q=95]")
print(time.perf_counter() - start)
"""


def dzsave(image: Path, scratch: Path) -> tuple[float, int]:
    """Seconds and tiles of ``vips dzsave`` (through pyvips, in its own process)."""
    out = scratch / "dzsave"
    shutil.rmtree(out.parent / "dzsave_files", ignore_errors=True)
    run = subprocess.run(
        [sys.executable, "-c", _DZSAVE, str(image), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise BenchError(f"dzsave failed: {run.stderr[-2000:]}")
    seconds = float(run.stdout.strip().splitlines()[-1])
    files = out.parent / "dzsave_files"
    tiles = sum(1 for _ in files.rglob("*.jpg"))
    shutil.rmtree(files, ignore_errors=True)
    (out.parent / "dzsave.dzi").unlink(missing_ok=True)
    return seconds, tiles


def precache(
    stack: harness.Stack, source_id: str, body: dict[str, Any] | None = None
) -> tuple[float, dict[str, Any]]:
    """Seconds from the POST (its JSON ``body``: the job's levels, frames, style ...; by
    default all levels of frame 0) to the job's end, and the job as ``GET /jobs/{id}``
    ends it."""
    http = stack.http()
    try:
        start = time.perf_counter()
        reply = http.request("POST", f"/item/{source_id}/tiles/precache", body or {})
        if reply.status != 201:
            raise BenchError(f"POST precache -> {reply.status}: {reply.body[:300]!r}")
        job_id = reply.json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}").json()
            if job["state"] != "running":
                return time.perf_counter() - start, job
            time.sleep(0.1)
    finally:
        http.close()
    raise BenchError(f"job {job_id} did not end in {JOB_TIMEOUT:.0f} s")


SINGLE_SIZE = (24000, 16000)  # a common microscopy export's size
SINGLE_COMPRESSIONS = ("none", "deflate", "lzw", "zstd", "jpeg")


def single_level(directory: Path, width: int, height: int, compression: str) -> Path:
    """A single-level 256-pixel-tiled TIFF of the demo pixels in ``compression`` (JPEG at
    Q 90; deflate and LZW with the horizontal predictor, as microscopy exports write
    them). libvips writes all but ZSTD, which its libtiff lacks: tifffile writes that."""
    from tilecast.sample import sample_image

    path = directory / f"single-{width}x{height}-{compression}.tiff"
    if path.exists():
        return path
    image = sample_image(width, height)
    if compression == "zstd":
        import tifffile

        tifffile.imwrite(path, image.numpy(), tile=(256, 256), compression="zstd",
                         photometric="rgb", bigtiff=True)  # fmt: skip
        return path
    options: dict[str, Any] = {"Q": 90} if compression == "jpeg" else {}
    if compression in ("deflate", "lzw"):
        options["predictor"] = "horizontal"
    image.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, pyramid=False,
                   compression=compression, bigtiff=True, **options)  # fmt: skip
    return path


def run(ctx: harness.BenchContext) -> Section:
    if ctx.quick:
        pyramid, single_size = ctx.pyramid, (4096, 3072)
    else:
        from tilecast.sample import make_demo_images

        pyramid, _single = make_demo_images(ctx.image_dir, *FULL_SIZE)
        single_size = SINGLE_SIZE
    folder = ctx.image_dir / "precache"
    folder.mkdir(parents=True, exist_ok=True)
    images = [("pyramidal JPEG TIFF", pyramid, pyramid)]
    for compression in SINGLE_COMPRESSIONS:
        image = single_level(folder, *single_size, compression)
        # libvips reads ZSTD tiles black: dzsave is timed on the deflate file's same pixels.
        dz_image = single_level(folder, *single_size, "deflate") if compression == "zstd" else image
        images.append((f"single-level TIFF, {compression}", image, dz_image))
    section = Section(
        title=f"7. Pre-rendering a whole pyramid, {WORKERS} worker processes, beside vips dzsave",
        measures=(
            "Tiles per second writing every tile of every level of an image: tilecast through "
            "a pre-rendering job (`POST /item/{id}/tiles/precache`, all levels, default JPEG "
            f"quality 95; one `tilecast worker --concurrency {WORKERS}`; the time from the "
            "POST until `GET /jobs/{id}` reports the job finished; tiles into Redis), and "
            "libvips' `dzsave` of the same file to 256-pixel JPEG tiles (Q 95, no overlap, "
            "`depth=onetile`, so the same levels; all cores; to the local disk) in the same "
            "run. The pyramidal file's own JPEG tiles are passed through by tilecast; for the "
            "single-level files (one per TIFF compression) every coarser level is "
            "synthesized: the job's base blocks make the levels under them from the tiles "
            "they read, then the coarser unstyled levels, then the styled tiles. libvips "
            "cannot read ZSTD tiles (its libtiff lacks the codec): that row's dzsave figure "
            "is for the deflate file of the same pixels."
        ),
        headers=[
            "image",
            "tiles",
            "dzsave s",
            "dzsave tiles/s",
            "tilecast s",
            "tilecast tiles/s",
            "tilecast / dzsave",
            "failed",
        ],
    )
    with Processes(ctx.scratch / "precache") as procs:
        stack = harness.start_stack(
            procs,
            [ctx.image_dir],
            worker_concurrency=WORKERS,
            api_workers=1,
            api_threads=4,
            auto_precache=0,
        )
        for label, image, dz_image in images:
            section.rows.append(_measure(stack, ctx, label, image, dz_image))
            print(f"    {section.rows[-1]}", flush=True)
    section.notes.append(
        "The goal (issue 20): at least 1.5x dzsave's tiles/s from single-level sources of "
        "every common compression, at equal process counts."
    )
    return section


def _measure(
    stack: harness.Stack, ctx: harness.BenchContext, label: str, image: Path, dz_image: Path
) -> list[str]:
    source = harness.add_source(stack, image)
    meta = harness.tile_metadata(stack, source)
    print(f"  dzsave {dz_image.name}", flush=True)
    dz_seconds, dz_tiles = dzsave(dz_image, ctx.scratch / "precache")
    print(f"  tilecast precache {image.name}", flush=True)
    seconds, job = precache(stack, source)
    dz_rate = dz_tiles / dz_seconds
    rate = job["total"] / seconds
    return [
        f"{label} {meta['sizeX']} x {meta['sizeY']}, {meta['levels']} levels",
        f"{job['total']} (dzsave {dz_tiles})",
        f"{dz_seconds:.1f}",
        f"{dz_rate:.0f}",
        f"{seconds:.1f}",
        f"{rate:.0f}",
        f"{rate / dz_rate:.2f}",
        str(job["failed"]),
    ]
