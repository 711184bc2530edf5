"""Deep Zoom (DZI) geometry and parameters, as girder_large_image's ``dzi.dzi`` and
``dzi_files/{level}/{x}_{y}.{ext}`` endpoints take them.

Deep Zoom levels count up from a 1 x 1 image (level 0) to the full resolution (level
``max_level``); each is half the next, rounded up. A level is cut into ``tilesize``
tiles, each widened by ``overlap`` pixels on every side that has a neighbour; the
last row and column are cropped to the level, never padded.

girder_large_image refuses level 0 (the 1 x 1 picture); tilecast serves it, as the
format defines it. Like girder_large_image, a level or tile outside the image is a
400, and the descriptor's ``encoding`` may be JPEG or PNG (and WEBP here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tilecast.api.protocols.boxes import PixelBox
from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid
from tilecast.common.query import DEFAULT_TILE_SIZE, OVERLAP, TILESIZE

NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
# Encodings a browser viewer can show, and the ``Format`` (file extension) of each.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
EXTENSIONS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_TILE_NAME = re.compile(r"([0-9]{1,9})_([0-9]{1,9})(?:\.([A-Za-z]{1,5}))?")


@dataclass(frozen=True)
class Layout:
    """``tilesize`` (a power of two, default 256) and ``overlap`` (default 0)."""

    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = 0

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> Layout:
        tile_size = TILESIZE.integer(args)
        assert tile_size is not None
        if tile_size & (tile_size - 1):
            raise BadRequest(
                f"tilesize must be a power of two, not {tile_size}", parameter=TILESIZE.name
            )
        overlap = OVERLAP.integer(args, high=tile_size)
        assert overlap is not None
        return cls(tile_size, overlap)

    @property
    def is_default(self) -> bool:
        return (self.tile_size, self.overlap) == (DEFAULT_TILE_SIZE, 0)


def max_level(size_x: int, size_y: int) -> int:
    """The full-resolution level: ceil(log2(the longer side))."""
    return (max(size_x, size_y) - 1).bit_length()


def pyramid(layout: Layout, size_x: int, size_y: int) -> Grid:
    """The Deep Zoom levels as a tile grid: halvings rounded up, as tilecast's own,
    but down to 1 x 1, and ``tilesize`` tiles."""
    top_level = max_level(size_x, size_y)
    return Grid(size_x, size_y, layout.tile_size, layout.tile_size, levels=top_level + 1)


def tile_box(layout: Layout, level: int, x: int, y: int, size_x: int, size_y: int) -> PixelBox:
    """The full-resolution area of tile ``x``, ``y`` of ``level`` and its size in pixels."""
    grid = pyramid(layout, size_x, size_y)
    if not 0 <= level <= grid.top_level:
        raise BadRequest(
            f"level must be between 0 and {grid.top_level} (the image scale), not {level}",
            parameter="level",
        )
    factor = grid.scale(level)
    width, height = grid.level_size(level)
    left, right = _tile_span(layout, x, width, "x")
    top, bottom = _tile_span(layout, y, height, "y")
    return PixelBox(
        left=left * factor,
        top=top * factor,
        right=min(size_x, right * factor),
        bottom=min(size_y, bottom * factor),
        width=right - left,
        height=bottom - top,
    )


def _tile_span(layout: Layout, index: int, extent: int, name: str) -> tuple[int, int]:
    start = index * layout.tile_size
    if start >= extent:
        raise BadRequest(f"{name} is outside the layer", parameter=name)
    return max(0, start - layout.overlap), min(extent, start + layout.tile_size + layout.overlap)


def largest_tile(layout: Layout, size_x: int, size_y: int) -> tuple[int, int]:
    """The widest and tallest tile of any level: the descriptor promises them all."""
    return _largest_span(layout, size_x), _largest_span(layout, size_y)


def _largest_span(layout: Layout, extent: int) -> int:
    """The longest tile span across ``extent`` (the full-resolution level; lower levels
    only have shorter ones). A span grows while its start is clamped to 0, is constant
    in the interior and shrinks once its end is clamped: the longest is at an end or
    where a clamp starts or stops, so those few indexes are enough."""
    size, overlap = layout.tile_size, layout.overlap
    last = (extent - 1) // size
    free_start = -(-overlap // size)  # first index whose start is not clamped
    clamped_end = max(0, -(-(extent - overlap) // size) - 1)  # first whose end is
    candidates = {0, last, free_start - 1, free_start, clamped_end - 1, clamped_end}
    spans = (
        min(extent, (i + 1) * size + overlap) - max(0, i * size - overlap)
        for i in candidates
        if 0 <= i <= last
    )
    return max(spans)


def parse_level(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
        raise BadRequest(f"level must be a non-negative integer, not {raw!r}", parameter="level")
    return int(raw)


def parse_tile_name(raw: str) -> tuple[int, int, str | None]:
    """``{x}_{y}`` with an optional ``.{ext}``: x, y and the encoding the extension
    names (None without one)."""
    match = _TILE_NAME.fullmatch(raw)
    if match is None:
        raise BadRequest(f"a tile is named {{x}}_{{y}}.{{format}}, not {raw!r}", parameter="xandy")
    ext = match.group(3)
    encoding = None
    if ext is not None:
        encoding = EXTENSIONS.get(ext.lower())
        if encoding is None:
            names = ", ".join(sorted(EXTENSIONS))
            raise BadRequest(f"unknown tile format {ext!r}; one of {names}", parameter="xandy")
    return int(match.group(1)), int(match.group(2)), encoding


def descriptor(layout: Layout, encoding: str, size_x: int, size_y: int) -> str:
    """The ``.dzi`` XML, attribute for attribute as girder_large_image writes it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Image TileSize="{layout.tile_size}" Overlap="{layout.overlap}"'
        f' Format="{FORMATS[encoding]}" xmlns="{NAMESPACE}">'
        f'<Size Width="{size_x}" Height="{size_y}"/>'
        "</Image>"
    )
