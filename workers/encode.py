"""Encode tiles, regions and thumbnails to JPEG, PNG, WEBP, TIFF or AVIF.

Pixels of any dtype come in. Unstyled pixels are first made 8-bit the way large_image
does (:func:`unstyled_pixels`); styled pixels keep the dtype a style's ``dtype`` asked
for. Formats that hold only 8 bits (JPEG, WEBP, AVIF, and PNG
for anything but uint16) get large_image's 8-bit conversion (``_imageToPIL``: integer
types shifted to their top byte, floats clipped to [0, 255] and truncated, more than
four bands keep three), so a 16-bit tile looks the same in both. uint16 pixels become a
16-bit PNG; TIFF keeps the array's dtype (large_image keeps only single-band uint16 and
makes everything else 8-bit: the same values, once scaled).

Each format goes through the faster of libvips and PIL, measured on 256x256 RGB tiles
(2 cores):

    JPEG q95 4:4:4   PIL 0.9 ms   libvips 1.3 ms   (q75 4:2:0: 0.24 / 0.95 ms)
                     simplejpeg 0.14 ms (PIL on an idle machine: 0.2 ms + copies)
    PNG level 2      PIL 8.0 ms   libvips 4.9 ms
    WEBP q95         PIL 8.3 ms   libvips 10.7 ms
    TIFF LZW         PIL 3.0 ms   libvips 4.2 ms

JPEG goes through simplejpeg, which large_image too encodes with when installed (its
``performance`` extra), so JPEG output has large_image's options and bytes exactly
(quality; subsampling 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0, which libvips cannot
express); the other formats through PIL, as large_image: WEBP at the default
quality is byte for byte large_image's, and PIL's libtiff writes ZSTD, which the
bundled libvips cannot.
TIFFs of other dtypes than uint8 are written by libvips (PIL has no 16-bit RGB mode).
AVIF is libvips' ``heifsave`` with the AV1 codec, when the bundled libvips has it
(:func:`avif_supported`); otherwise asking for AVIF is a 400.

A natively read JPEG tile asked for as JPEG is returned byte for byte, undecoded.
"""

from __future__ import annotations

import functools
import io
import logging

import numpy as np
import PIL.Image
import pyvips
import simplejpeg

from tilecast.common.encoding import TIFF_COMPRESSIONS, EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.workers.rawtile import RawTile
from tilecast.workers.vipsutil import from_numpy

log = logging.getLogger(__name__)

# large_image's jpegSubsampling values as simplejpeg names them.
JPEG_SUBSAMPLING = {0: "444", 1: "422", 2: "420"}
PNG_COMPRESSION = 2  # large_image's compress_level
AVIF_EFFORT = 4  # libvips' default: 20-80 ms for 512 x 512; higher costs much more
# libvips compression names (common.encoding.TIFF_COMPRESSIONS values) -> PIL's.
PIL_TIFF_COMPRESSION = {
    "none": "raw",
    "lzw": "tiff_lzw",
    "deflate": "tiff_adobe_deflate",
    "jpeg": "jpeg",
    "zstd": "zstd",
}


def to_uint8(array: np.ndarray) -> np.ndarray:
    """(h, w, bands) of any dtype as 8-bit (h, w, 1-4 bands), as large_image's
    ``_imageToPIL``: integer types are shifted to their top byte, floats clipped to
    [0, 255] and truncated, and images with more than four bands keep three."""
    array = _at_most_four_bands(array)
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype in (np.uint16, np.uint32):
        # The top byte, shifted straight into the 8-bit result: one pass, no
        # intermediate array (floor_divide then astype made two).
        out = np.empty(array.shape, dtype=np.uint8)
        return np.right_shift(array, 8 * (dtype.itemsize - 1), out=out, casting="unsafe")
    if dtype == np.int8:
        return (array.astype(float) + 128).astype(np.uint8)
    if dtype == np.int16:
        return np.floor_divide(array.astype(float) + 2**15, 256).astype(np.uint8)
    if dtype == np.int32:
        return np.floor_divide(array.astype(float) + 2**31, 2**24).astype(np.uint8)
    return np.clip(np.nan_to_num(array.astype(float), nan=0), 0, 255).astype(np.uint8)


def _at_most_four_bands(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.shape[2] > 4:
        array = array[:, :, :3]
    return array


def encode_tile(tile: RawTile, options: EncodingOptions) -> bytes:
    """An unstyled raw tile in the asked encoding (JPEG tiles pass through as JPEG)."""
    if tile.jpeg is not None and options.format == "JPEG":
        return tile.jpeg
    return encode_pixels(unstyled_pixels(tile.array(), options), options)


def unstyled_pixels(pixels: np.ndarray, options: EncodingOptions) -> np.ndarray:
    """Unstyled pixels as large_image encodes them: 8 bits, except that a TIFF keeps
    single-band uint16 data (``_encodeImage``'s one exception). Styled pixels keep
    the dtype the style asked for (see :func:`encode_pixels`)."""
    pixels = _at_most_four_bands(pixels)
    if options.format == "TIFF" and pixels.dtype == np.uint16 and pixels.shape[2] == 1:
        return pixels
    return to_uint8(pixels)


def encode_pixels(pixels: np.ndarray, options: EncodingOptions) -> bytes:
    """Encode (h, w, bands) pixels of any dtype in the asked format."""
    pixels = _at_most_four_bands(pixels)
    fmt = options.format
    if fmt == "TIFF":
        return _encode_tiff(pixels, TIFF_COMPRESSIONS[options.tiff_compression])
    if fmt == "PNG":
        if pixels.dtype != np.uint16:
            return bytes(from_numpy(to_uint8(pixels)).pngsave_buffer(compression=PNG_COMPRESSION))
        # Tagged 16-bit, libvips writes the values as they are (as b-w / sRGB it would
        # rescale them from 0-255).
        sixteen = "grey16" if pixels.shape[2] <= 2 else "rgb16"
        image = from_numpy(pixels).copy(interpretation=sixteen)
        return bytes(image.pngsave_buffer(compression=PNG_COMPRESSION, bitdepth=16))
    pixels = to_uint8(pixels)
    if fmt == "JPEG":
        return _encode_jpeg(pixels, options.jpeg_quality, options.jpeg_subsampling)
    if fmt == "WEBP":
        if options.webp_lossless:
            return _pil_save(_pil(pixels), "WEBP", lossless=True)
        return _pil_save(_pil(pixels), "WEBP", quality=options.webp_quality)
    if fmt == "AVIF":
        return _encode_avif(pixels, options.avif_quality)
    raise ValueError(f"unknown encoding {fmt}")


def _encode_jpeg(pixels: np.ndarray, quality: int, subsampling: int) -> bytes:
    """simplejpeg (libjpeg-turbo), as large_image encodes when it is installed: the
    same bytes as large_image's, 0.14 ms for a 256x256 tile against PIL's 0.2 ms plus
    the copy into a PIL image. JPEG has no alpha: RGBA is read as RGBX in place (no
    copy), LA keeps its grey band."""
    bands = pixels.shape[2]
    if bands <= 2:
        pixels, colorspace = pixels[:, :, :1], "GRAY"
    else:
        colorspace = "RGB" if bands == 3 else "RGBA"
    return bytes(
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels),
            quality=quality,
            colorspace=colorspace,
            colorsubsampling=JPEG_SUBSAMPLING[subsampling],
        )
    )


def _encode_tiff(pixels: np.ndarray, compression: str) -> bytes:
    """A TIFF of the pixels' own dtype (8 bits for JPEG compression, which holds no more)."""
    if compression == "jpeg" or pixels.dtype == np.uint8:
        image = _pil(to_uint8(pixels))
        if compression == "jpeg" and image.mode not in ("L", "RGB"):
            image = image.convert("RGB" if image.mode == "RGBA" else "L")
        return _pil_save(image, "TIFF", compression=PIL_TIFF_COMPRESSION[compression])
    if compression == "zstd":
        # libvips cannot write ZSTD; PIL can, for one band of 16-bit, 32-bit or float data.
        if pixels.shape[2] != 1:
            raise BadRequest(
                f"tiffCompression zstd cannot hold {pixels.shape[2]}-band {pixels.dtype} "
                "pixels; use deflate or lzw",
                parameter="tiffCompression",
            )
        plane = np.ascontiguousarray(pixels[:, :, 0])
        return _pil_save(PIL.Image.fromarray(plane), "TIFF", compression="zstd")
    return bytes(from_numpy(pixels).tiffsave_buffer(compression=compression))


@functools.cache
def avif_supported() -> bool:
    """Whether this process's libvips writes AVIF (heifsave with the AV1 codec)."""
    try:
        pyvips.Image.black(8, 8, bands=3).heifsave_buffer(compression="av1", Q=50)
    except pyvips.Error as exc:
        log.info("AVIF output unavailable: libvips cannot write AV1 HEIF: %s", exc)
        return False
    return True


def _encode_avif(pixels: np.ndarray, quality: int) -> bytes:
    if not avif_supported():
        raise BadRequest("this server's libvips cannot write AVIF", parameter="encoding")
    return bytes(
        from_numpy(pixels).heifsave_buffer(compression="av1", Q=quality, effort=AVIF_EFFORT)
    )


def _pil(pixels: np.ndarray) -> PIL.Image.Image:
    # PIL infers the mode from the shape of uint8 data: L, LA, RGB, RGBA.
    data = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    return PIL.Image.fromarray(np.ascontiguousarray(data))


def _pil_save(image: PIL.Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()
