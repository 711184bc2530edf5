"""large_image's side of the styled-render benchmark, run in its own process.

Renders every given tile with ``getTile`` through a pool of N processes (as many as
tilecast's worker has), each with the file opened once with the style
(``large_image.open(path, style=...)``) and one tile outside the timed set rendered first,
so that opening, imports and the style's whole-image statistics are not timed. Every tile
is asked once, so large_image's tile cache never answers one.

    python -m tests.bench.largeimage_style_side < spec.json > result.json

spec: ``{"path": ..., "style": {...}, "tiles": [[z, x, y], ...], "warmup": [z, x, y],
"processes": 2}``; result: ``{"seconds": wall time, "tiles": n, "bytes": total}``.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from typing import Any

_source: Any = None


def _open(path: str, style: dict[str, Any], warmup: list[int]) -> None:
    global _source
    import large_image

    large_image.config.setConfig("cache_backend", "python")
    large_image.config.setConfig("icc_correction", False)
    _source = large_image.open(path, style=style)
    z, x, y = warmup
    _source.getTile(x, y, z)


def _render(tile: list[int]) -> int:
    z, x, y = tile
    return len(_source.getTile(x, y, z))


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    processes = int(spec.get("processes", 2))
    args = (spec["path"], spec["style"], spec["warmup"])
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_open, initargs=args) as pool:
        # Every process has run its initializer once this returns.
        pool.map(time.sleep, [0.2] * processes, chunksize=1)
        start = time.perf_counter()
        sizes = pool.map(_render, spec["tiles"], chunksize=8)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "tiles": len(sizes), "bytes": sum(sizes)}


def main() -> None:
    spec = json.load(sys.stdin)
    json.dump(measure(spec), sys.stdout)


if __name__ == "__main__":
    main()
