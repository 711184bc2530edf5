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


# Rows of edge copies between mosaics halved together: more than lanczos3's reach at a
# factor of two (6 input rows), and even, so every part keeps its sampling phase.
_HALVE_MARGIN = 8
HALVE_BATCH = 16


def halve_many(mosaics: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`halve` of each of several arrays of one even shape and dtype, in one
    libvips call per ``HALVE_BATCH``: stacked with rows of edge copies between them
    (what libvips extends each image with on its own), so every result is the one
    :func:`halve` gives, at about two thirds of the cost of halving them one by one
    (the reduction's cost per call, issue 20)."""
    if len(mosaics) < 2 or not _stackable(mosaics):
        return [halve(mosaic) for mosaic in mosaics]
    halved: list[np.ndarray] = []
    for start in range(0, len(mosaics), HALVE_BATCH):
        halved.extend(_halve_stacked(mosaics[start : start + HALVE_BATCH]))
    return halved


def _stackable(mosaics: list[np.ndarray]) -> bool:
    height, width, bands = mosaics[0].shape
    return (
        mosaics[0].dtype == np.uint8
        and bands <= 4
        and height % 2 == 0
        and width % 2 == 0
        and all(m.shape == mosaics[0].shape and m.dtype == np.uint8 for m in mosaics)
    )


def _halve_stacked(mosaics: list[np.ndarray]) -> list[np.ndarray]:
    height, width, bands = mosaics[0].shape
    margin = _HALVE_MARGIN
    step = height + 2 * margin
    stack = np.empty((step * len(mosaics), width, bands), dtype=np.uint8)
    for index, mosaic in enumerate(mosaics):
        top = index * step
        stack[top : top + margin] = mosaic[:1]
        stack[top + margin : top + margin + height] = mosaic
        stack[top + margin + height : top + step] = mosaic[-1:]
    reduced = to_numpy(from_numpy(stack).reduce(2, 2, kernel="lanczos3"))
    half, first = step // 2, margin // 2
    return [reduced[i * half + first : i * half + first + height // 2] for i in range(len(mosaics))]
