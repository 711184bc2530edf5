"""Decoders for tile data that the bundled libvips cannot read: ZSTD TIFF tiles, and
JPEG 2000 (libvips here is built without OpenJPEG) with imagecodecs.

The libtiff inside pyvips-binary is built without ZSTD: it hands back black pixels for
ZSTD-compressed TIFFs without an error. ZSTD tiles and strips are therefore decoded
here, with the system's libzstd through ctypes (Debian and Ubuntu ship it with
libtiff), plus TIFF's horizontal-differencing predictor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib
from functools import lru_cache

import imagecodecs
import numpy as np

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.codecheaders import JPEG2000, check_tile
from tilecast.workers.sources import tiffdir


class CodecError(ValueError):
    """Compressed data that does not decode to the expected size."""


@lru_cache(maxsize=1)
def _libzstd() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("zstd")
    for candidate in (name, "libzstd.so.1", "libzstd.dylib"):
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.ZSTD_decompress.restype = ctypes.c_size_t
        lib.ZSTD_decompress.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        lib.ZSTD_isError.restype = ctypes.c_uint
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        return lib
    return None


def zstd_available() -> bool:
    return _libzstd() is not None


def zstd_decompress(data: bytes, size: int) -> bytes:
    """Decompress one ZSTD frame whose decoded size is ``size`` bytes."""
    lib = _libzstd()
    if lib is None:
        raise CodecError("ZSTD-compressed TIFF needs libzstd, which is not installed")
    out = ctypes.create_string_buffer(size)
    src = ctypes.create_string_buffer(data, len(data))
    written = lib.ZSTD_decompress(out, size, src, len(data))
    if lib.ZSTD_isError(written) or written != size:
        raise CodecError("ZSTD data does not decode to the expected size")
    return out.raw


def decode_block(
    data: bytes,
    *,
    compression: int,
    predictor: int,
    width: int,
    height: int,
    bands: int,
    dtype: np.dtype,
) -> np.ndarray:
    """One tile or strip of chunky (interleaved) samples as (height, width, bands).

    ``dtype`` carries the file's byte order; the result is in native order.
    """
    size = width * height * bands * dtype.itemsize
    if compression == tiffdir.COMPRESSION_ZSTD:
        raw = zstd_decompress(data, size)
    elif compression in (tiffdir.COMPRESSION_ADOBE_DEFLATE, tiffdir.COMPRESSION_DEFLATE):
        try:
            raw = zlib.decompress(data)
        except zlib.error as exc:
            raise CodecError(f"deflate data does not decode: {exc}") from None
    elif compression == tiffdir.COMPRESSION_NONE:
        raw = data
    else:
        raise CodecError(f"TIFF compression {compression} is not decoded here")
    if len(raw) < size:
        raise CodecError("tile data is shorter than the tile")
    array = np.frombuffer(raw[:size], dtype=dtype).reshape(height, width, bands)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    if predictor == 2:
        # Horizontal differencing: each sample stores the difference to its left
        # neighbour, modulo the sample type (integer samples only).
        if dtype.kind not in "ui":
            raise CodecError("horizontal predictor on floating-point samples")
        array = np.cumsum(array, axis=1, dtype=array.dtype)
    elif predictor not in (0, 1):
        raise CodecError(f"TIFF predictor {predictor} is not supported")
    return array


def decode_jpeg2000(data: bytes, width: int, height: int, where: str) -> np.ndarray:
    """A JPEG 2000 codestream or jp2 stream of a ``width`` x ``height`` tile (or DICOM
    frame) as (height, width, bands), in the stream's own dtype. Its header is checked
    first (workers/codecheaders.py), so a hostile SIZ never sizes a decoder's buffer;
    a stream that does not decode is a 422 naming ``where``."""
    check_tile(JPEG2000, data, width, height, where)
    try:
        pixels = imagecodecs.jpeg2k_decode(data)
    except imagecodecs.Jpeg2kError as exc:
        raise UnsupportedImage(f"{where}: its JPEG 2000 data does not decode ({exc})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.shape[:2] != (height, width):
        raise UnsupportedImage(f"{where}: its JPEG 2000 data decodes to another size")
    return pixels
