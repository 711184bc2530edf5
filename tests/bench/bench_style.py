"""Benchmark 4: styled-tile render throughput, tilecast beside large_image, same styles.

tilecast: one Celery worker with 2 pool processes renders every tile of one native level
with a style, every tile sent at once as a ``tilecast.render_tile`` task (as benchmark 3's
*celery* runs), cold: the source's styled and unstyled tiles are deleted first (the
workers keep the file open; the style's whole-image statistics stay cached, as they would
after the first styled tile of a viewer).

large_image: the same tiles with the same style through ``getTile`` in a pool of 2
processes (``tests/bench/largeimage_style_side.py``), each with the file opened once with
the style and one tile rendered before timing. Both encode JPEG at quality 95.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from tests.bench import harness
from tests.bench.bench_hits import fetch_all
from tests.bench.bench_render import dispatch_batches, dispatch_celery
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section
from tilecast.common.style import canonical_style

WORKERS = 2
UINT16_SIZE = (8192, 6144)


@dataclass(frozen=True)
class StyleCase:
    label: str
    image: str  # "pyramid" (uint8 RGB JPEG) or "uint16" (3-channel uint16, deflate)
    style: dict[str, Any]


CASES = (
    StyleCase(
        "one band, fixed range, two-colour palette",
        "pyramid",
        {"band": 1, "min": 0, "max": 255, "palette": ["#000", "#0f0"]},
    ),
    StyleCase(
        "three bands composited (lighten)",
        "pyramid",
        {
            "bands": [
                {"band": 1, "palette": ["#000", "#f00"]},
                {"band": 2, "palette": ["#000", "#0f0"]},
                {"band": 3, "palette": ["#000", "#00f"]},
            ]
        },
    ),
    StyleCase(
        "named colormap (viridis), auto range",
        "pyramid",
        {"band": 2, "palette": "viridis"},
    ),
    StyleCase(
        "uint16, three channels, min/max from image statistics",
        "uint16",
        {
            "bands": [
                {"band": 1, "palette": "#f00", "min": "min", "max": "max"},
                {"band": 2, "palette": "#0f0", "min": "min", "max": "max"},
                {"band": 3, "palette": "#00f", "min": "min", "max": "max"},
            ]
        },
    ),
)


def make_uint16_image(image_dir: Path) -> Path:
    """A 3-channel uint16 pyramidal TIFF (deflate), like a small fluorescence scan."""
    from tilecast.sample import sample_image

    path = image_dir / f"sample-{UINT16_SIZE[0]}x{UINT16_SIZE[1]}-uint16.tiff"
    if path.exists():
        return path
    image = sample_image(*UINT16_SIZE)
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    wide = (image.cast("ushort") * 257 + 40).cast("ushort")
    wide = wide.copy(interpretation="rgb16")
    partial = path.with_suffix(".partial.tiff")
    wide.tiffsave(
        str(partial),
        tile=True,
        tile_width=256,
        tile_height=256,
        pyramid=True,
        compression="deflate",
        bigtiff=True,
    )
    partial.rename(path)
    return path


def large_image_rate(
    path: Path, style: dict[str, Any], tiles: list[tuple[int, int, int]], warmup: Any
) -> dict[str, Any]:
    spec = {
        "path": str(path),
        "style": style,
        "tiles": tiles,
        "warmup": warmup,
        "processes": WORKERS,
    }
    return harness.run_side("tests.bench.largeimage_style_side", spec, timeout=1800)


def run(ctx: harness.BenchContext, *, cases: tuple[StyleCase, ...] = CASES) -> Section:
    uint16 = make_uint16_image(ctx.image_dir)
    paths = {"pyramid": ctx.pyramid, "uint16": uint16}
    section = Section(
        title=f"4. Styled-tile render throughput, {WORKERS} processes: tilecast vs large_image",
        measures=(
            f"Tiles per second rendering every tile of one native level with a style, "
            f"{WORKERS} processes on each side. *tilecast*: one Celery worker "
            f"(`--concurrency {WORKERS}`), all tiles sent at once, done at the last completion "
            "on `tc:done`, either as one `tilecast.render_tile` task per tile (what viewers "
            "cause) or as `tilecast.render_tiles` tasks of 8x8 neighbours on the bulk queue "
            "(what pre-rendering sends; the bulk pool at normal priority here, "
            "`TILECAST_BULK_NICE=0`); the source's styled and unstyled tiles are deleted "
            "before each run, the style's whole-image statistics stay cached. "
            f"*large_image*: `getTile` of the same tiles with the same style in a pool of "
            f"{WORKERS} processes, each having opened the file with the style and rendered one "
            "tile first. Both read the file through the OS page cache and encode JPEG "
            "quality 95. Goal: tilecast >= 3x large_image (judged on the blocks)."
        ),
        headers=[
            "style",
            "image, level",
            "tiles",
            "tilecast tiles/s, a task per tile",
            "tilecast tiles/s, blocks of 8x8",
            "large_image tiles/s",
            "ratio per tile / large_image",
            "ratio blocks / large_image",
            "errors",
        ],
    )
    ratios: list[float] = []
    with Processes(ctx.scratch / "style") as procs:
        # The blocks go to the bulk pool, which runs in SCHED_IDLE so that it never takes
        # CPU from a person's tiles; here nothing else needs the CPU, and what is measured
        # is how fast the pool renders, beside large_image's pool at normal priority.
        stack = harness.start_stack(
            procs,
            [ctx.image_dir],
            worker_concurrency=WORKERS,
            api_workers=1,
            api_threads=8,
            bulk_nice=0,
        )
        ids = {name: harness.add_source(stack, path) for name, path in paths.items()}
        metas = {name: harness.tile_metadata(stack, sid) for name, sid in ids.items()}
        client = stack.redis.client()
        for case in cases:
            meta = metas[case.image]
            source_id = ids[case.image]
            levels = int(meta["levels"])
            z = levels - 2 if case.image == "pyramid" else levels - 1
            tiles = [(z, x, y) for x, y in harness.level_tiles(meta, z)]
            if ctx.quick:
                tiles = tiles[:192]
            text = json.dumps(case.style)
            style = canonical_style(text, max_bytes=1 << 20)
            # A few styled tiles first: every pool process opens the file and the style's
            # statistics are computed and cached (they are not what is measured).
            warm = [
                harness.tile_path(source_id, z, x, y) + "?style=" + _quote(text)
                for _, x, y in tiles[:8]
            ]
            replies = fetch_all(stack.api_port, warm, concurrency=8)
            bad = [r.status for r in replies if r.status != 200]
            if bad:
                raise BenchError(
                    f"styled warm-up failed for {case.label}: {bad[:3]} {replies[0].body[:300]!r}"
                )
            # The blocks run on the bulk node, whose processes the HTTP warm-up (served by
            # the interactive node) did not touch: one-tile blocks of the same level warm
            # them (file opened, style compiled) before timing.
            dispatch_batches(stack, source_id, tiles[:16], timeout=600, style=style, side=1)
            rates: dict[str, float] = {}
            errors = 0
            for mode, dispatch in (("task", dispatch_celery), ("block", dispatch_batches)):
                harness.delete_keys(client, f"tc:tile:{source_id}:*", f"tc:raw:{source_id}:*")
                seconds, failed = dispatch(stack, source_id, tiles, timeout=1800, style=style)
                rates[mode] = len(tiles) / seconds
                errors += failed
            theirs_result = large_image_rate(
                paths[case.image], case.style, tiles, warmup=[levels - 3, 0, 0]
            )
            theirs = theirs_result["tiles"] / theirs_result["seconds"]
            ratio = rates["block"] / theirs
            ratios.append(ratio)
            print(
                f"  style {case.label}: tilecast {rates['task']:,.0f} tiles/s per task, "
                f"{rates['block']:,.0f} in blocks; large_image {theirs:,.0f} tiles/s; "
                f"ratio {ratio:.2f}, errors {errors}",
                flush=True,
            )
            section.rows.append(
                [
                    f"{case.label}: `{text}`",
                    f"{meta['sizeX']}x{meta['sizeY']} {case.image}, z={z}",
                    str(len(tiles)),
                    f"{rates['task']:,.0f}",
                    f"{rates['block']:,.0f}",
                    f"{theirs:,.0f}",
                    f"{rates['task'] / theirs:.2f}",
                    f"**{ratio:.2f}**",
                    str(errors),
                ]
            )
    met = all(r >= 3 for r in ratios)
    section.notes.append(
        f"Goal tilecast >= 3x large_image: {'met' if met else 'NOT met'} "
        f"(lowest ratio {min(ratios):.2f})."
    )
    section.notes.append(
        f"libvips {pyvips.version(0)}.{pyvips.version(1)}; the uint16 image is generated by "
        "`tests/bench/bench_style.py` (`make_uint16_image`)."
    )
    return section


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
