"""The unstyled intermediate tile and its lossless cache serialization.

A raw tile is either the file's own compressed JPEG bytes (a native read of a JPEG
tile: cached as is, passed through without decoding when a client asks for JPEG) or
pixels. Pixels are cached losslessly, so a level synthesized from synthesized levels
never compounds lossy encoding.

Codec for pixels, measured on 256x256x3 uint8 tiles (2 cores, this project's machine):

    codec                    encode   decode   size (smooth / photo-like noise)
    zlib level 1             0.4 ms   0.3 ms   0.05 / 0.77 of raw
    zlib level 3             0.5 ms   0.3 ms   0.04 / 0.77
    zlib level 6             1.3 ms   0.3 ms   0.03 / -
    libvips PNG level 1      1.1 ms   1.5 ms   0.07 / 1.06
    libvips PNG level 2      1.0 ms   1.3 ms   0.06 / 0.79
    libvips TIFF deflate+pred 1.0 ms  1.1 ms   0.08 / -
    libvips WebP lossless    2.9 ms   3.2 ms   0.02 / -

and on slide tiles (a JPEG 2000 SVS's 256x256x3, a Philips TIFF's 256x256x4 RGBA):

    zlib level 1             0.48 / 4.5 ms   0.21 / 1.5 ms   0.040 / 0.49 of raw
    zstd level 1             0.17 / 1.2 ms   0.10 / 0.5 ms   0.023 / 0.48
    lz4                      0.09 / 0.7 ms   0.08 / 0.5 ms   0.062 / 0.66

zstd level 1 (imagecodecs) is the codec: three to four times zlib's speed, and smaller;
when it saves less than 1/8 the pixels are stored uncompressed, which keeps decoding of
incompressible tiles at memcpy cost. Tiles cached by a version that wrote zlib still
read.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import imagecodecs
import numpy as np
import PIL.Image
import simplejpeg

from tilecast.common.errors import UnsupportedImage
from tilecast.workers import codecheaders

MAGIC = b"TCRT"
VERSION = 1
KIND_JPEG = ord("J")
KIND_PIXELS = ord("P")
CODEC_RAW = 0
CODEC_ZLIB = 1  # read only: what earlier versions wrote
CODEC_ZSTD = 2
ZSTD_LEVEL = 1
# The largest JPEG tile decoded (the TIFF reader's bound on a tile's size): a JPEG held
# here is a file's own tile, whose header its reader checked; this keeps any other
# JPEG reaching a decoder from sizing its output beyond a tile.
MAX_JPEG_TILE_PIXELS = 4096 * 4096

# magic, version, kind
_PREFIX = struct.Struct("<4sBB")
# dtype (numpy str, e.g. "|u1", "<u2"), height, width, bands, codec
_PIXELS = struct.Struct("<8sIIIB")


class RawTileError(ValueError):
    """Bytes that are not a serialized raw tile (or a JPEG that does not decode)."""


@dataclass(frozen=True, eq=False)
class RawTile:
    """Exactly one of ``jpeg`` (a standalone JPEG) or ``pixels`` (h, w, bands)."""

    jpeg: bytes | None = None
    pixels: np.ndarray | None = None

    @classmethod
    def from_jpeg(cls, data: bytes) -> RawTile:
        return cls(jpeg=bytes(data))

    @classmethod
    def from_pixels(cls, pixels: np.ndarray) -> RawTile:
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        if pixels.ndim != 3:
            raise ValueError("pixels must be (height, width, bands)")
        return cls(pixels=np.ascontiguousarray(pixels))

    @property
    def is_jpeg(self) -> bool:
        return self.jpeg is not None

    def array(self) -> np.ndarray:
        """The pixels, (height, width, bands). JPEG tiles are decoded with PIL, the
        decoder large_image uses, so decoded values match it exactly."""
        if self.pixels is not None:
            return self.pixels
        assert self.jpeg is not None
        try:
            return decode_jpeg(self.jpeg)
        except RawTileError:
            # The bytes are the file's own: the file is damaged, not the request.
            raise UnsupportedImage("a tile of the image is corrupt and does not decode") from None

    # -- serialization --------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if self.jpeg is not None:
            return _PREFIX.pack(MAGIC, VERSION, KIND_JPEG) + self.jpeg
        assert self.pixels is not None
        pixels = self.pixels
        raw = pixels.tobytes()
        packed = imagecodecs.zstd_encode(raw, level=ZSTD_LEVEL)
        codec = CODEC_ZSTD
        if len(packed) > len(raw) - len(raw) // 8:
            packed, codec = raw, CODEC_RAW
        height, width, bands = pixels.shape
        header = _PIXELS.pack(pixels.dtype.str.encode().ljust(8), height, width, bands, codec)
        return _PREFIX.pack(MAGIC, VERSION, KIND_PIXELS) + header + packed

    @classmethod
    def from_bytes(cls, data: bytes) -> RawTile:
        if len(data) < _PREFIX.size:
            raise RawTileError("too short for a raw tile")
        magic, version, kind = _PREFIX.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise RawTileError("not a raw tile of this version")
        body = memoryview(data)[_PREFIX.size :]
        if kind == KIND_JPEG:
            return cls(jpeg=bytes(body))
        if kind != KIND_PIXELS or len(body) < _PIXELS.size:
            raise RawTileError("unknown raw tile kind")
        dtype_text, height, width, bands, codec = _PIXELS.unpack_from(body)
        payload = body[_PIXELS.size :]
        try:
            dtype = np.dtype(dtype_text.rstrip(b" ").decode())
            size = height * width * bands * dtype.itemsize
            if codec == CODEC_ZSTD:  # into a buffer of the tile's size: never larger
                raw = imagecodecs.zstd_decode(payload, out=size)
            elif codec == CODEC_ZLIB:
                raw = zlib.decompress(payload)
            else:
                raw = bytes(payload)
            pixels = np.frombuffer(raw, dtype=dtype).reshape(height, width, bands)
        except (ValueError, TypeError, zlib.error, imagecodecs.ZstdError) as exc:
            raise RawTileError(f"corrupt raw tile: {exc}") from None
        return cls(pixels=pixels)


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode a JPEG into (height, width, bands) uint8.

    Baseline one- and three-component JPEGs (what tiled TIFFs and slide scanners
    store) go through simplejpeg, straight into a numpy array: 0.08 ms for a 256x256
    RGB tile against 0.25 ms through PIL and ``np.asarray`` (whose ``tobytes`` copies
    the image again), the same pixels (both are libjpeg-turbo with default settings).
    It is also what large_image decodes such tiles with when simplejpeg is installed.
    The header is checked first: no decoder allocates more than a tile's pixels.
    """
    try:
        codecheaders.check_at_most(codecheaders.JPEG, data, MAX_JPEG_TILE_PIXELS, "a JPEG tile")
    except UnsupportedImage as exc:
        raise RawTileError(str(exc)) from None
    components = _baseline_components(data)
    if components is not None:
        try:
            array = simplejpeg.decode_jpeg(data, colorspace="GRAY" if components == 1 else "RGB")
        except ValueError:
            pass  # not what the header promised: PIL says why below
        else:
            return array if array.ndim == 3 else array[:, :, np.newaxis]
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as exc:
        raise RawTileError(f"JPEG data does not decode: {exc}") from None
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array


def _baseline_components(data: bytes) -> int | None:
    """1 or 3 for a baseline JPEG with that many components, else None (progressive,
    CMYK, or not a JPEG). Walks the marker segments: a byte pair that looks like a
    start-of-frame inside a table is never mistaken for one."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xC0:
            return data[pos + 9] if pos + 10 <= len(data) and data[pos + 9] in (1, 3) else None
        if (0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xDA:
            return None  # another kind of frame, or scan data before any frame
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None
