"""Decoders for tile data that the bundled libvips cannot read: ZSTD TIFF tiles, and
JPEG 2000 (libvips here is built without OpenJPEG) with imagecodecs, including the
colours of Aperio's YCbCr JPEG 2000 tiles (TIFF compression 33003).

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

# The TIFF compressions decode_block reads.
BLOCK_COMPRESSIONS = frozenset(
    {
        tiffdir.COMPRESSION_NONE,
        tiffdir.COMPRESSION_LZW,
        tiffdir.COMPRESSION_ADOBE_DEFLATE,
        tiffdir.COMPRESSION_DEFLATE,
        tiffdir.COMPRESSION_ZSTD,
    }
)


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
        raw = _inflate(data, size)
    elif compression == tiffdir.COMPRESSION_LZW:
        try:
            raw = memoryview(imagecodecs.lzw_decode(data, out=bytearray(size)))
        except imagecodecs.LzwError as exc:
            raise CodecError(f"LZW data does not decode: {exc}") from None
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
        # imagecodecs' loop: numpy's cumsum along the row costs twice as much (a tenth
        # of a deflate pyramid's pre-rendering, issue 20).
        array = imagecodecs.delta_decode(
            array, axis=1, out=array if array.flags.writeable else None
        )
    elif predictor not in (0, 1):
        raise CodecError(f"TIFF predictor {predictor} is not supported")
    return array


def _inflate(data: bytes, size: int) -> memoryview | bytes:
    """A deflate (zlib) stream inflated to at most ``size`` bytes. libdeflate first: it
    inflates a tile in a third of zlib's time (issue 20), into a buffer of the block's
    size, and stops where that buffer ends; zlib then cuts a stream that inflates further
    at the block's size, as libtiff reads only what the block holds."""
    try:
        return memoryview(imagecodecs.deflate_decode(data, out=bytearray(size)))
    except imagecodecs.DeflateError:
        pass
    try:
        return zlib.decompressobj().decompress(data, size)
    except zlib.error as exc:
        raise CodecError(f"deflate data does not decode: {exc}") from None


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


# Aperio's JPEG 2000 compression whose codestream components are Y, Cb and Cr (OpenSlide
# converts them to RGB; 33005 and the generic codes hold RGB, or undo their own colour
# transform in the decoder).
COMPRESSION_APERIO_YCBCR = 33003
_SOC_SIZ = b"\xff\x4f\xff\x51"


def decode_tiff_jpeg2000(
    data: bytes, compression: int, width: int, height: int, where: str
) -> np.ndarray:
    """A JPEG 2000 TIFF tile as (height, width, bands) pixels, RGB for Aperio's YCbCr code
    as OpenSlide shows it. imagecodecs (OpenJPEG) already converts a three-component
    stream whose chroma is subsampled (what Aperio's scanners write); one at full
    chroma resolution comes back as Y, Cb, Cr and is converted here."""
    pixels = decode_jpeg2000(data, width, height, where)
    if (
        compression == COMPRESSION_APERIO_YCBCR
        and pixels.shape[2] == 3
        and pixels.dtype == np.uint8
        and not _chroma_subsampled(data)
    ):
        pixels = ycbcr_to_rgb(pixels)
    return pixels


def _chroma_subsampled(data: bytes) -> bool:
    """Whether the codestream's SIZ gives a component other than the first a coarser
    grid (XRsiz or YRsiz above 1)."""
    start = data.find(_SOC_SIZ)
    if start < 0 or len(data) < start + 42:
        return False
    count = int.from_bytes(data[start + 40 : start + 42], "big")
    factors = data[start + 42 : start + 42 + 3 * count]
    return any(factors[i + 1] > 1 or factors[i + 2] > 1 for i in range(3, len(factors) - 2, 3))


# libjpeg's fixed-point YCbCr -> RGB (jdcolor.c), which OpenSlide's tables reproduce:
# 16 fraction bits, the chroma terms rounded once.
_SCALE_BITS = 16
_HALF = 1 << (_SCALE_BITS - 1)


def _fixed(value: float) -> int:
    return int(value * (1 << _SCALE_BITS) + 0.5)


def ycbcr_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Full-range (JFIF) 8-bit YCbCr to RGB, rounded as libjpeg and OpenSlide round."""
    y = pixels[:, :, 0].astype(np.int32)
    cb = pixels[:, :, 1].astype(np.int32) - 128
    cr = pixels[:, :, 2].astype(np.int32) - 128
    red = y + ((_fixed(1.402) * cr + _HALF) >> _SCALE_BITS)
    green = y + ((-_fixed(0.34414) * cb - _fixed(0.71414) * cr + _HALF) >> _SCALE_BITS)
    blue = y + ((_fixed(1.772) * cb + _HALF) >> _SCALE_BITS)
    rgb = np.stack([red, green, blue], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)
