"""The format library's own reads of a benchmark's tiles, run in its own process: what
reading the same pixels costs with nothing else around them (no tile server, no cache,
no scaling, no encoding).

    python -m tests.bench.direct_side < spec.json > result.json

spec: ``{"library": "zarr" | "czi", "path": ..., "mode": "open_source" | "bulk",
"reads": [read, ...], "warmup": read, "cache_bytes": n}``, one read per tile, worked out
by the benchmark from the file's own metadata:

- zarr (the ``zarr`` library, zarr v3): ``{"array": "s0", "selection": [[start, stop],
  ...]}``, one range per dimension of the store's array at that path;
- czi (``pylibCZIrw``): ``{"roi": [x, y, w, h], "plane": {"C": c, "Z": z, "T": t},
  "scene": s, "zoom": f}`` (libCZI composes the area from the subblocks covering it).

``open_source``: the file opened first (and ``warmup`` read), each read timed alone,
cold: zarr keeps no decoded chunks, and libCZI is opened without a subblock cache.
``bulk``: all the reads in one span (``seconds`` holds that one number, ``cpu`` the
process's CPU seconds in it), libCZI with a subblock cache of ``cache_bytes`` (as
tilecast's CZI reader keeps). Result:
``{"seconds": [...], "bytes": [...]}`` (decoded bytes per read).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def zarr_reader(path: str, cache_bytes: int) -> Callable[[dict[str, Any]], np.ndarray]:
    import zarr

    group = zarr.open_group(path, mode="r")
    arrays: dict[str, Any] = {}

    def read(spec: dict[str, Any]) -> np.ndarray:
        array = arrays.get(spec["array"])
        if array is None:
            array = arrays[spec["array"]] = group[spec["array"]]
        return np.asarray(array[tuple(slice(start, stop) for start, stop in spec["selection"])])

    return read


def czi_reader(path: str, cache_bytes: int) -> Callable[[dict[str, Any]], np.ndarray]:
    from pylibCZIrw import czi as pyczi

    options = pyczi.CacheOptions(max_memory_usage=cache_bytes) if cache_bytes else None
    document = pyczi.CziReader(path, cache_options=options)

    def read(spec: dict[str, Any]) -> np.ndarray:
        return np.asarray(
            document.read(
                roi=tuple(spec["roi"]), plane=spec["plane"], scene=spec["scene"],
                zoom=spec["zoom"],
            )
        )  # fmt: skip

    return read


READERS = {"zarr": zarr_reader, "czi": czi_reader}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    bulk = spec["mode"] == "bulk"
    if spec["mode"] not in ("bulk", "open_source"):
        raise ValueError(f"unknown mode {spec['mode']!r}")
    read = READERS[spec["library"]](spec["path"], spec.get("cache_bytes", 0) if bulk else 0)
    if spec.get("warmup"):
        read(spec["warmup"])
    if bulk:
        start, cpu = time.perf_counter(), time.process_time()
        sizes = [read(one).nbytes for one in spec["reads"]]
        seconds = [time.perf_counter() - start]
        return {"seconds": seconds, "cpu": time.process_time() - cpu, "bytes": sizes}
    seconds: list[float] = []
    sizes = []
    for one in spec["reads"]:
        start = time.perf_counter()
        pixels = read(one)
        seconds.append(time.perf_counter() - start)
        sizes.append(pixels.nbytes)
    return {"seconds": seconds, "bytes": sizes}


def main() -> None:
    json.dump(measure(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
