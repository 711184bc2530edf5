"""large_image's zarr source on one store, run in tests/zarrvenv.py's virtualenv (zarr 2).

    python tests/largeimage_zarr_side.py REQUEST.json

REQUEST: ``{"path": <a store directory or file>, "tiles": [[z, x, y, frame], ...],
"out": ".../tiles.npz"}``.
Prints ``{"source": <its class name>, "metadata": getMetadata()}`` as JSON and writes each
tile, as the raw numpy array ``getTile`` returns (its own data type, (height, width,
bands)), into ``out`` under ``"z_x_y_frame"``. Imports nothing of tilecast.
"""

from __future__ import annotations

import json
import os
import sys

import large_image
import numpy as np


def main(request_path: str) -> int:
    with open(request_path) as handle:
        request = json.load(handle)
    path = request["path"]
    # large_image opens a directory store by its root metadata file.
    if os.path.isdir(path):
        path = os.path.join(path, ".zattrs")
    source = large_image.open(path)
    tiles = {}
    for z, x, y, frame in request["tiles"]:
        tile = source.getTile(x, y, z, frame=frame, numpyAllowed="always")
        tile = np.asarray(tile)
        tiles[f"{z}_{x}_{y}_{frame}"] = tile if tile.ndim == 3 else tile[:, :, np.newaxis]
    np.savez(request["out"], **tiles)
    print(json.dumps({"source": type(source).__name__, "metadata": source.getMetadata()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
