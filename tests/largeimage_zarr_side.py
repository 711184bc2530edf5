"""large_image's zarr source on one store, run in tests/zarrvenv.py's virtualenv (zarr 2).

    python tests/largeimage_zarr_side.py REQUEST.json

REQUEST (every key but ``path`` and ``out`` optional)::

    {"path": <a store directory or file>, "out": ".../tiles.npz",
     "tiles": [[z, x, y, frame], ...],        # getTile's raw numpy arrays
     "png_tiles": [[z, x, y, frame], ...],    # getTile as PNG (encoding="PNG"), decoded
     "styled_tiles": [[style, z, x, y, frame], ...],  # the same, opened with ``style``
     "histograms": [{histogram() keyword arguments}, ...],
     "bands": [frame, ...]}     # getBandInformation(statistics=True), a new source each

Prints ``{"source": <its class name>, "metadata": getMetadata(), "histograms": [...],
"bands": [...]}`` as JSON and writes the tiles, (height, width, bands) arrays, into
``out`` under ``"z_x_y_frame"``, ``"png_z_x_y_frame"`` and ``"styled_<n>"`` (n: the
styled tile's place in its list). Imports nothing of tilecast.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

import large_image
import numpy as np
from PIL import Image


def main(request_path: str) -> int:
    with open(request_path) as handle:
        request = json.load(handle)
    path = request["path"]
    # large_image opens a directory store by its root metadata file.
    if os.path.isdir(path):
        path = os.path.join(path, ".zattrs")
    source = large_image.open(path)
    arrays: dict[str, np.ndarray] = {}
    for z, x, y, frame in request.get("tiles", []):
        tile = source.getTile(x, y, z, frame=frame, numpyAllowed="always")
        arrays[f"{z}_{x}_{y}_{frame}"] = _three_dimensional(np.asarray(tile))
    if request.get("png_tiles"):
        png = large_image.open(path, encoding="PNG")
        for z, x, y, frame in request["png_tiles"]:
            image = Image.open(io.BytesIO(png.getTile(x, y, z, frame=frame)))
            arrays[f"png_{z}_{x}_{y}_{frame}"] = _three_dimensional(np.asarray(image))
    for number, (style, z, x, y, frame) in enumerate(request.get("styled_tiles", [])):
        styled = large_image.open(path, encoding="PNG", style=style)
        image = Image.open(io.BytesIO(styled.getTile(x, y, z, frame=frame)))
        arrays[f"styled_{number}"] = _three_dimensional(np.asarray(image))
    np.savez(request["out"], **arrays)
    answer: dict[str, Any] = {"source": type(source).__name__, "metadata": source.getMetadata()}
    answer["histograms"] = [
        _plain(source.histogram(**kwargs)["histogram"]) for kwargs in request.get("histograms", [])
    ]
    # A fresh source per frame: one remembers its first frame's answer for every other.
    answer["bands"] = [
        _plain(
            large_image.open(path, noCache=True).getBandInformation(statistics=True, frame=frame)
        )
        for frame in request.get("bands", [])
    ]
    print(json.dumps(answer))
    return 0


def _three_dimensional(array: np.ndarray) -> np.ndarray:
    return array if array.ndim == 3 else array[:, :, np.newaxis]


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as JSON's lists and numbers."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
