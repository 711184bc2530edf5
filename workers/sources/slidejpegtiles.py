"""A vendor TIFF's JPEG tiles decoded here, as OpenSlide decodes them, where one tile of
tilecast's is one tile of the file.

OpenSlide's ``read_region`` of one 256-pixel tile of a Philips TIFF costs about 1.3 ms:
it decodes the TIFF tile with libjpeg into ARGB (about 0.2 ms), puts it in its cache,
paints it with cairo into the region, and openslide-python turns the premultiplied ARGB
into RGBA. OpenSlide's Philips driver reads a level's tiles one for one from a tiled
directory (the levels are the file's tiled directories, in order), decoding each with the
JPEG tables loaded first and the JPEG colour space the TIFF's photometric tag names
(``decode_jpeg`` in OpenSlide's openslide-decode-tiff.c), a warning of libjpeg's (corrupt
data) taken as an error. The same decode here (libjpeg-turbo through simplejpeg, with its
defaults: the same IDCT and upsampling; the tables in front of the tile's data; strict)
gives the same pixels, opaque, in 0.2 ms -- where libjpeg's own reading of the stream's
markers names the colour space OpenSlide imposes (else OpenSlide reads the tile).

Only where OpenSlide would hand out that tile unchanged: the level maps to its tiled
directory, tilecast's tile is the directory's tile (same size, on its grid, the level's
downsample exactly the power of two), lies wholly inside the level (OpenSlide makes what
lies past it transparent), holds data (a tile of 0 bytes is missing: transparent), and
decodes to its tile size. Anything else (``read`` answers None) is left to
``read_region``, which also reports damaged tiles as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import simplejpeg

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.codecheaders import JPEG, check_tile
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.tiffdir import (
    COMPRESSION_JPEG,
    PHOTOMETRIC_RGB,
    PHOTOMETRIC_YCBCR,
    TiffDirectory,
)

log = logging.getLogger(__name__)

# Vendors whose OpenSlide driver reads a level's tiles one for one from its tiled TIFF
# directory, the levels being the tiled directories in file order.
VENDORS = frozenset({"philips"})
# What a photometric tag makes OpenSlide tell libjpeg the data is (jpeg_color_space).
_COLOUR_SPACES = frozenset({PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR})
# Component ids some libjpeg versions take for RGB or other colour spaces ('R' 'G' 'B',
# 'r' 'g' 'b', and libjpeg 9's big-gamut YCC), where others go by the JFIF marker.
_SPECIAL_IDS = frozenset({(82, 71, 66), (114, 103, 98), (1, 34, 35)})
SOI, EOI = b"\xff\xd8", b"\xff\xd9"
# A tile's JPEG is refused beyond this many bytes per pixel (OpenSlide reads it instead).
MAX_BYTES_PER_PIXEL = 8


class SlideJpegTiles:
    """The slide levels whose tiles are read here: OpenSlide level -> its directory."""

    def __init__(
        self, file: ImageFile, levels: dict[int, TiffDirectory], tile_width: int, tile_height: int
    ) -> None:
        self.file = file
        self.levels = levels
        self.tile_width = tile_width
        self.tile_height = tile_height

    @classmethod
    def for_slide(
        cls,
        vendor: str,
        file: ImageFile,
        directories: Sequence[TiffDirectory],
        level_dimensions: Sequence[tuple[int, int]],
        tile_size: tuple[int, int],
    ) -> SlideJpegTiles | None:
        """The slide's levels read here, or None when none is (another vendor, levels
        that are not the tiled directories, tiles OpenSlide does not decode directly)."""
        if vendor not in VENDORS:
            return None
        tiled = [directory for directory in directories if directory.is_tiled]
        if len(tiled) != len(level_dimensions):
            return None
        levels = {
            number: directory
            for number, (directory, (width, height)) in enumerate(
                zip(tiled, level_dimensions, strict=True)
            )
            if _decodable(directory, tile_size)
            and directory.width >= width
            and directory.height >= height
        }
        return cls(file, levels, *tile_size) if levels else None

    def read(self, number: int, x: int, y: int, level_size: tuple[int, int]) -> np.ndarray | None:
        """Tile (x, y) of slide level ``number`` (``level_size`` as OpenSlide reports it)
        as (height, width, 4) RGBA, or None when ``read_region`` must read it."""
        directory = self.levels.get(number)
        tw, th = self.tile_width, self.tile_height
        if directory is None or (x + 1) * tw > level_size[0] or (y + 1) * th > level_size[1]:
            return None
        across = -(-directory.width // tw)
        index = x + y * across
        offsets, counts = directory.tile_offsets, directory.tile_byte_counts
        if index >= len(offsets) or index >= len(counts):
            return None
        offset, count = int(offsets[index]), int(counts[index])
        if count <= 0 or count > MAX_BYTES_PER_PIXEL * tw * th or offset + count > self.file.size:
            return None
        data = self.file.read(offset, count)
        try:
            stream = _standalone(directory.jpeg_tables, data)
            check_tile(JPEG, stream, tw, th, f"tile x={x} y={y}")
            if _guessed_colour_space(stream) != directory.photometric:
                return None  # libjpeg alone would take it for another colour space
            # strict: a warning (corrupt data) is an error, as OpenSlide makes it one.
            rgba = simplejpeg.decode_jpeg(stream, colorspace="RGBA", strict=True)
        except (UnsupportedImage, ValueError) as exc:
            log.info("level %d tile x=%d y=%d left to OpenSlide: %s", number, x, y, exc)
            return None
        if rgba.shape != (th, tw, 4) or rgba.dtype != np.uint8:
            return None
        return rgba


def _decodable(directory: TiffDirectory, tile_size: tuple[int, int]) -> bool:
    """OpenSlide's own condition for decoding a directory's tiles with libjpeg directly
    (8-bit, 3 samples, contiguous, RGB or YCbCr JPEG), on tilecast's tile grid."""
    return (
        directory.compression == COMPRESSION_JPEG
        and directory.planar_config == 1
        and directory.photometric in _COLOUR_SPACES
        and directory.bits_per_sample == 8
        and directory.samples_per_pixel == 3
        and (directory.tile_width, directory.tile_height) == tile_size
    )


def _standalone(tables: bytes | None, data: bytes) -> bytes:
    """The tile's JPEG with the directory's tables in front, as libjpeg reads them when
    the tables are loaded first: SOI, the tables' segments, the tile's from its SOI on."""
    if not tables:
        return data
    if tables[:2] != SOI or tables[-2:] != EOI or data[:2] != SOI:
        raise ValueError("the JPEG tables or the tile lack their markers")
    return SOI + tables[2:-2] + data[2:]


def _guessed_colour_space(stream: bytes) -> int | None:
    """The photometric (RGB or YCbCr) that the colour space libjpeg assumes for this
    3-component stream corresponds to, where every libjpeg version assumes the same
    (its JFIF and Adobe markers, its component ids); None otherwise."""
    jfif, adobe, ids = False, None, None
    position = 2
    while position + 4 <= len(stream) and stream[position] == 0xFF:
        marker = stream[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        length = int.from_bytes(stream[position + 2 : position + 4], "big")
        payload = stream[position + 4 : position + 2 + length]
        if marker == 0xDA:  # the scan: the header is complete
            break
        if marker == 0xE0 and length >= 16 and payload[:5] == b"JFIF\x00":
            jfif = True
        elif marker == 0xEE and length >= 14 and payload[:5] == b"Adobe":
            adobe = payload[11]
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if len(payload) < 15 or payload[5] != 3:
                return None
            ids = (payload[6], payload[9], payload[12])
        position += 2 + length
    if ids is None:
        return None
    if ids in _SPECIAL_IDS:
        rgb = ids == (82, 71, 66) and not jfif and adobe in (None, 0)
        return PHOTOMETRIC_RGB if rgb else None
    if jfif or adobe is None or adobe == 1:
        return PHOTOMETRIC_YCBCR
    return PHOTOMETRIC_RGB if adobe == 0 else None
