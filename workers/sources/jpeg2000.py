"""Plain JPEG 2000 files: jp2 (and jpf/jpx with a jp2-compatible codestream) and raw
codestreams (.j2k, .j2c), as large_image's openjpeg source serves them.

Recognised by content (the jp2 signature box, or a codestream's SOC + SIZ markers).
The codestream's resolution levels are the native levels: level ``levels - 1 - r`` is
the image reduced ``r`` times, and a tile of it is decoded alone -- only the area
under it, at that resolution -- by OpenJPEG (workers/sources/openjpeg.py). Levels
coarser than the codestream holds are synthesized as for any reader.

Geometry follows large_image's ``OpenjpegFileTileSource``: ``levels`` is the number
of resolutions, and the tile size the power of two that makes the coarsest one fit a
tile; a tile size outside 256 to 512 is clamped into it and the level count made
anew from the image size. Magnification and pixel size come from an XML box
(``mxl ``, Optrascan's ``ScanInfo`` / ``EncodeInfo``) or an XML comment in the main
header; the ``mig `` and ``mag `` boxes are the macro and label images.

Bounds: the header is parsed with bounded reads (workers/sources/jp2parse.py), the
full size must be within ``max_decode_pixels``, a jp2 whose image header and SIZ
disagree is refused, and a decode allocates one tile.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pyvips

from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import jp2parse, openjpeg
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.jp2parse import Box, Jp2FormatError, Jp2Structure
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader
from tilecast.workers.vipsutil import to_numpy

log = logging.getLogger(__name__)

MIN_TILE, MAX_TILE = 256, 512  # large_image's _minTileSize, _maxTileSize
# Boxes large_image shows as associated images, and the XML box it reads metadata from.
ASSOCIATED_BOXES = {b"mig ": "macro", b"mag ": "label"}
XML_BOX = b"mxl "
# large_image reads these boxes' content from 16 bytes past the box's start (a box with
# a 64-bit length) and skips boxes over 16 MiB.
BOX_HEADER_READ, MAX_BOX_READ = 16, 16 * 1024 * 1024
MAX_ASSOCIATED_PIXELS = 64 * 1024 * 1024


class Jpeg2000Source(Reader):
    name = "jpeg2000"
    format_name = "JPEG 2000"  # what its 422s start with
    priority = PRIORITIES["jpeg2000"]

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        return jp2parse.is_jpeg2000(probe.head)

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        self._max_tile_pixels = 0
        try:
            structure = jp2parse.parse(file)
        except Jp2FormatError as exc:
            raise UnsupportedImage(f"JPEG 2000: not a readable file: {exc}") from None
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
        if not openjpeg.available():
            raise UnsupportedImage("JPEG 2000: the OpenJPEG library (libopenjp2) is not installed")
        self._codec = openjpeg.CODEC_JP2 if structure.boxes else openjpeg.CODEC_J2K
        self._init_geometry(structure, settings)
        self._associated_boxes: dict[str, Box] = {}
        self._read_boxes(structure)

    # -- opening ------------------------------------------------------------------------
    def _init_geometry(self, structure: Jp2Structure, settings: Settings) -> None:
        stream = structure.codestream
        width, height = stream.width, stream.height
        if structure.header_size is not None and structure.header_size != (width, height):
            raise UnsupportedImage(
                f"JPEG 2000: the image header says {structure.header_size[0]}x"
                f"{structure.header_size[1]}, the codestream {width}x{height}: the file "
                "is corrupt or hostile"
            )
        if width * height > settings.max_decode_pixels:
            raise UnsupportedImage("JPEG 2000: the image has more pixels than this server decodes")
        first = stream.components[0]
        if any((c.dx, c.dy) != (1, 1) for c in stream.components):
            raise UnsupportedImage("JPEG 2000: components of subsampled resolution are not read")
        if any(
            (c.precision, c.signed) != (first.precision, first.signed) for c in stream.components
        ):
            raise UnsupportedImage("JPEG 2000: components of different precisions are not read")
        if first.precision > 16:
            raise UnsupportedImage(f"JPEG 2000: {first.precision}-bit samples are not read")
        self.size_x, self.size_y = width, height
        self.dtype = np.dtype(
            ("i" if first.signed else "u") + ("1" if first.precision <= 8 else "2")
        )
        # A palette (jp2 pclr box) turns a component into the channels its mapping names.
        self.band_count = structure.palette_channels or len(stream.components)
        resolutions = stream.decompositions + 1
        self.levels, tile, self._coarsest_native = _large_image_levels(width, height, resolutions)
        self.tile_width = self.tile_height = tile
        self._resolutions = resolutions
        self._max_tile_pixels = tile * tile

    def _read_boxes(self, structure: Jp2Structure) -> None:
        info: dict[str, float] = {}
        texts = [text for text in structure.codestream.comments if text.lstrip().startswith(b"<")]
        for box in structure.boxes:
            if box.kind == XML_BOX:
                content = self._box_content(box)
                if content is not None:
                    texts.append(content)
            elif box.kind in ASSOCIATED_BOXES:
                self._associated_boxes[ASSOCIATED_BOXES[box.kind]] = box
        for text in texts:
            info = _scan_details(text) or info
        mm_x = info.get("mm_x")
        self.mm_x = mm_x
        self.mm_y = info.get("mm_y")
        # large_image: ``mag or 0.01 / mm_x if mm_x else None``.
        self.magnification = (info.get("magnification") or 0.01 / mm_x) if mm_x else None

    def _box_content(self, box: Box) -> bytes | None:
        """A box's content as large_image reads it (from 16 bytes past its start), or
        None for one larger than it reads."""
        length = box.end - box.offset
        if length > MAX_BOX_READ or length < BOX_HEADER_READ:
            return None
        return self.file.read(box.offset + BOX_HEADER_READ, length - BOX_HEADER_READ)

    # -- associated images ------------------------------------------------------------------
    def associated_names(self) -> list[str]:
        return sorted(self._associated_boxes)

    def associated_image(self, name: str) -> np.ndarray:
        box = self._associated_boxes.get(name)
        content = self._box_content(box) if box is not None else None
        if content is None:
            return super().associated_image(name)
        try:
            image = pyvips.Image.new_from_buffer(content, "", access="sequential", fail=True)
            if image.width * image.height > MAX_ASSOCIATED_PIXELS:
                raise UnsupportedImage(f"the associated image {name!r} is too large to decode")
            return to_numpy(image)
        except pyvips.Error as exc:
            log.warning("cannot read associated image %s of %s: %s", name, self.path, exc)
            raise UnsupportedImage(f"the associated image {name!r} cannot be read") from None

    # -- the reader interface -------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        if frame != 0 or not self._coarsest_native <= z < self.levels:
            return None
        scale = 1 << (self.levels - 1 - z)
        return -(-self.size_x // scale), -(-self.size_y // scale)

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if self.native_level_size(z, frame) is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        return RawTile.from_pixels(self.pad_tile(self._decode(z, x, y)))

    def _decode(self, z: int, x: int, y: int) -> np.ndarray:
        reduce = self.levels - 1 - z
        scale = 1 << reduce
        span_x, span_y = self.tile_width * scale, self.tile_height * scale
        left, top = x * span_x, y * span_y
        area = openjpeg.Area(
            left=left,
            top=top,
            right=min(self.size_x, left + span_x),
            bottom=min(self.size_y, top + span_y),
            reduce=reduce,
        )
        try:
            pixels = openjpeg.decode_area(self.file, self._codec, area, self._max_tile_pixels)
        except openjpeg.OpenJpegError as exc:
            log.warning("JPEG 2000 tile z=%d x=%d y=%d of %s: %s", z, x, y, self.path, exc)
            raise UnsupportedImage(
                f"JPEG 2000: tile z={z} x={x} y={y} cannot be decoded: the file is corrupt"
            ) from None
        if pixels.dtype != self.dtype or pixels.shape[2] != self.band_count:
            raise UnsupportedImage(
                f"JPEG 2000: tile z={z} x={x} y={y} decodes to other bands than the file's"
            )
        return pixels

    @property
    def estimated_bytes(self) -> int:
        return 16 * 1024  # the parsed header; every decode is made and freed per tile

    def close(self) -> None:
        self.file.close()


def _large_image_levels(width: int, height: int, resolutions: int) -> tuple[int, int, int]:
    """large_image's ``levels``, tile size and first native level for an image of
    ``resolutions`` resolution levels: the tile the coarsest resolution fits, as a
    power of two; clamped to 256 - 512, in which case the levels are counted anew and
    the coarsest ones not in the codestream are not native."""
    levels = resolutions
    exponent = max(math.log2(width), math.log2(height)) - levels + 1
    tile = 2 ** math.ceil(exponent)
    first_native = 0
    if not MIN_TILE <= tile <= MAX_TILE:
        tile = min(MAX_TILE, max(MIN_TILE, tile))
        levels = max(1, math.ceil(math.log(max(width, height) / tile) / math.log(2)) + 1)
        first_native = max(0, levels - resolutions)
    return levels, tile, first_native


def _scan_details(text: bytes) -> dict[str, float]:
    """Magnification and pixel size from Optrascan XML (``ScanInfo`` or ``EncodeInfo``
    holding ``ScanDetails`` with ``Magnification`` and ``PixelResolution`` in µm)."""
    try:
        root = ElementTree.fromstring(text.decode("utf8", "ignore"))
    except ElementTree.ParseError:
        return {}
    if _local(root.tag) not in ("ScanInfo", "EncodeInfo"):
        return {}
    details = next((child for child in root if _local(child.tag) == "ScanDetails"), None)
    if details is None:
        return {}
    values = {_local(child.tag): (child.text or "").strip() for child in details}
    values.update({_local(key): value for key, value in details.attrib.items()})
    try:
        magnification = float(values["Magnification"])
        scale = float(values["PixelResolution"]) * 1e-3
    except (KeyError, ValueError):
        return {}
    return {"magnification": magnification, "mm_x": scale, "mm_y": scale}


def _local(tag: Any) -> str:
    text = str(tag)
    return text.split("}", 1)[1] if text.startswith("{") else text
