"""Conversions between libvips images and numpy arrays (height, width, bands), and the
one halving every synthesized level (and a composed image's parts) is reduced with."""

from __future__ import annotations

import numpy as np
import pyvips

VIPS_TO_NUMPY: dict[str, str] = {
    "uchar": "uint8",
    "char": "int8",
    "ushort": "uint16",
    "short": "int16",
    "uint": "uint32",
    "int": "int32",
    "float": "float32",
    "double": "float64",
}
NUMPY_TO_VIPS: dict[str, str] = {v: k for k, v in VIPS_TO_NUMPY.items()}


def vips_dtype(image: pyvips.Image) -> np.dtype:
    try:
        return np.dtype(VIPS_TO_NUMPY[image.format])
    except KeyError:
        raise ValueError(f"unsupported pixel format {image.format}") from None


def to_numpy(image: pyvips.Image) -> np.ndarray:
    """Evaluate ``image`` into a read-only (height, width, bands) array."""
    dtype = vips_dtype(image)
    data = image.write_to_memory()
    return np.ndarray(buffer=data, dtype=dtype, shape=(image.height, image.width, image.bands))


def from_numpy(array: np.ndarray) -> pyvips.Image:
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    array = np.ascontiguousarray(array)
    height, width, bands = array.shape
    fmt = NUMPY_TO_VIPS.get(str(array.dtype))
    if fmt is None:
        raise ValueError(f"unsupported dtype {array.dtype}")
    return pyvips.Image.new_from_memory(array.data, width, height, bands, fmt)


def halve(content: np.ndarray) -> np.ndarray:
    """Downsample (h, w, bands) by two, to (ceil(h/2), ceil(w/2), bands)."""
    height, width, bands = content.shape
    if content.dtype != np.uint8 or bands > 4:
        return np.ascontiguousarray(content[::2, ::2])
    image = from_numpy(content)
    even_w, even_h = width + (width & 1), height + (height & 1)
    if (even_w, even_h) != (width, height):
        # An odd edge: repeat the last row / column so the filter sees image, not black.
        image = image.embed(0, 0, even_w, even_h, extend="copy")
    reduced = image.reduce(2, 2, kernel="lanczos3")
    return to_numpy(reduced)
