"""large_image's side of the cold-miss benchmark, run in its own process.

Times ``getTile`` in-process, cold: large_image's caches are cleared before every sample
(``cache_backend`` = ``python``, ``large_image.cache_util.cachesClear()``), and in the
``cold_source`` mode the file is opened again inside the timed span, as tilecast's worker
does after a generation bump. ``icc_correction`` is off, so native JPEG tiles are passed
through as tilecast passes them (project notes, large_image-facts.md).

    python -m tests.bench.largeimage_side < spec.json > result.json

spec: ``{"path": ..., "mode": "open_source" | "cold_source" | "bulk", "tiles": [[z, x, y],
...], "warmup": [z, x, y], "source": "openslide"}`` (``source``: optional, the
``large_image_source_*`` module to open with instead of large_image's own choice; a tile
may carry a fourth number, its frame; with ``"source": "zarr"`` a directory store is
opened by its root metadata file, as that source wants it);
result: ``{"seconds": [...], "bytes": [...], "source": name}``. ``bulk`` times all the
tiles in one span (``seconds`` holds that one number, ``cpu`` the process's CPU seconds
in it): a pre-rendering pass's share.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    import large_image
    import large_image.cache_util

    large_image.config.setConfig("cache_backend", "python")
    large_image.config.setConfig("icc_correction", False)
    path = spec["path"]
    if spec.get("source") == "zarr" and os.path.isdir(path):
        path = os.path.join(path, ".zattrs")
    mode = spec["mode"]
    clear = large_image.cache_util.cachesClear

    opener = large_image.open
    if spec.get("source"):
        opener = importlib.import_module(f"large_image_source_{spec['source']}").open
    clear()
    source = opener(path)
    name = getattr(source, "name", type(source).__name__)
    warm = spec.get("warmup")
    if warm:
        get_tile(source, warm)
    seconds: list[float] = []
    sizes: list[int] = []
    if mode == "bulk":
        start, cpu = time.perf_counter(), time.process_time()
        sizes = [len(get_tile(source, tile)) for tile in spec["tiles"]]
        seconds = [time.perf_counter() - start]
        return {"seconds": seconds, "cpu": time.process_time() - cpu, "bytes": sizes,
                "source": name}  # fmt: skip
    for tile in spec["tiles"]:
        clear()
        if mode == "cold_source":
            source = None
            start = time.perf_counter()
            fresh = opener(path)
            data = get_tile(fresh, tile)
            seconds.append(time.perf_counter() - start)
            del fresh
        elif mode == "open_source":
            start = time.perf_counter()
            data = get_tile(source, tile)
            seconds.append(time.perf_counter() - start)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        sizes.append(len(data))
    return {"seconds": seconds, "bytes": sizes, "source": name}


def get_tile(source: Any, tile: list[int]) -> Any:
    """``getTile`` of [z, x, y] or [z, x, y, frame] (frame only when given: not every
    source takes the keyword)."""
    z, x, y, *frame = tile
    if frame:
        return source.getTile(x, y, z, frame=frame[0])
    return source.getTile(x, y, z)


def main() -> None:
    spec = json.load(sys.stdin)
    json.dump(measure(spec), sys.stdout)


if __name__ == "__main__":
    main()
