"""Parts and descriptions of composed images (workers/sources/composed.py), for the unit
and end-to-end tests: lossless tiled TIFFs written by libvips from numpy arrays, so the
expected composed pixels are computed with numpy from the same arrays.

``make_parts(folder)`` writes:

- ``ch0.tiff`` .. ``ch2.tiff``: one uint16 channel each (700 x 500, pyramid), as a
  multiplexed experiment stores one file per channel;
- ``left.tiff``, ``right.tiff``: RGB uint8 (600 x 400, pyramid), two fields of a mosaic;
- ``flat.tiff``: RGB uint8 (600 x 400), full resolution only;
- ``grey.tiff``: one uint8 band (700 x 500, pyramid);
- ``pages.tiff``: two pages (frames), ``channel_plane(0)`` and ``channel_plane(1)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyvips
import yaml

from tilecast.workers.vipsutil import from_numpy

CHANNEL_SIZE = (700, 500)
FIELD_SIZE = (600, 400)
CHANNELS = ("DAPI", "CD3", "CD8")


def smooth(width: int, height: int, seed: int, bands: int, dtype: type) -> np.ndarray:
    """Smooth structure plus texture, different for each seed, over the dtype's range."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for band in range(bands):
        phase = seed * 1.7 + band * 0.9
        broad = np.sin(xs * 0.013 + phase) * 0.3 + np.cos(ys * 0.017 - phase) * 0.3
        fine = np.sin(xs * 0.37 + ys * 0.11 + phase) * 0.08
        planes.append(0.5 + broad + fine)
    unit = np.clip(np.dstack(planes), 0, 1)
    top = np.iinfo(dtype).max
    return (unit * top * 0.95).astype(dtype)


def channel_plane(channel: int) -> np.ndarray:
    return smooth(*CHANNEL_SIZE, seed=channel, bands=1, dtype=np.uint16)


def field_pixels(name: str) -> np.ndarray:
    seed = {"left": 11, "right": 12, "flat": 13}[name]
    return smooth(*FIELD_SIZE, seed=seed, bands=3, dtype=np.uint8)


def grey_pixels() -> np.ndarray:
    return smooth(*CHANNEL_SIZE, seed=21, bands=1, dtype=np.uint8)


def write_part(path: Path, pixels: np.ndarray, *, pyramid: bool = True) -> Path:
    """A tiled, deflate-compressed TIFF of ``pixels``, with libvips' pyramid if asked."""
    from_numpy(pixels).tiffsave(
        str(path), tile=True, tile_width=256, tile_height=256, compression="deflate",
        pyramid=pyramid,
    )  # fmt: skip
    return path


def make_parts(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = {f"ch{c}": write_part(folder / f"ch{c}.tiff", channel_plane(c)) for c in range(3)}
    for name in ("left", "right"):
        parts[name] = write_part(folder / f"{name}.tiff", field_pixels(name))
    parts["flat"] = write_part(folder / "flat.tiff", field_pixels("flat"), pyramid=False)
    parts["grey"] = write_part(folder / "grey.tiff", grey_pixels())
    parts["pages"] = write_pages(folder / "pages.tiff", [channel_plane(0), channel_plane(1)])
    return parts


def write_pages(path: Path, planes: list[np.ndarray]) -> Path:
    """A multi-page TIFF, one full-resolution page per plane: one frame each."""
    stack = from_numpy(np.vstack(planes)).copy()
    stack.set_type(pyvips.GValue.gint_type, "page-height", planes[0].shape[0])
    stack.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, compression="deflate")
    return path


def write_description(path: Path, document: Any, *, as_yaml: bool = False) -> Path:
    text = yaml.safe_dump(document, sort_keys=False) if as_yaml else json.dumps(document)
    path.write_text(text)
    return path


def channels_description() -> dict[str, Any]:
    """One file per channel, named: three frames with IndexC and channel names."""
    return {
        "name": "three channels",
        "sources": [
            {"path": f"ch{c}.tiff", "channel": name, "z": 0} for c, name in enumerate(CHANNELS)
        ],
    }


def mosaic_description() -> dict[str, Any]:
    """Two fields side by side: one frame, 1200 x 400."""
    return {
        "sources": [
            {"path": "left.tiff"},
            {"path": "right.tiff", "z": 0, "position": {"x": FIELD_SIZE[0]}},
        ]
    }
