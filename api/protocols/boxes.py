"""What the standard tile protocols (Deep Zoom, IIIF) ask for, in tilecast's terms.

A DZI tile or an IIIF image request names an area of the full-resolution image and the
size to return it at: a :class:`PixelBox`. Where that box is exactly one tile of
tilecast's own pyramid -- on the tile grid of a level, a whole tile inside the image,
at that level's scale -- it is served as that ``zxy`` tile, from the same cache entry a
``zxy`` request reads; every other box is a region (api/protocols/handlers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tilecast.common.grid import Grid


@dataclass(frozen=True)
class PixelBox:
    """``left..right`` x ``top..bottom`` (exclusive) of the full-resolution image,
    returned at exactly ``width`` x ``height`` pixels."""

    left: int
    top: int
    right: int
    bottom: int
    width: int
    height: int


def aligned_tile(box: PixelBox, grid: Grid) -> tuple[int, int, int] | None:
    """``(z, x, y)`` of the tilecast tile that is exactly ``box``, else None.

    A tile whose full-resolution area reaches past the image is never one: tilecast's
    edge tiles may be padded to the tile size, a protocol's edge tiles are cropped.
    """
    if (box.width, box.height) != (grid.tile_width, grid.tile_height):
        return None
    span_x, span_y = box.right - box.left, box.bottom - box.top
    if span_x % box.width or span_x // box.width != span_y / box.height:
        return None
    factor = span_x // box.width
    if factor < 1 or factor & (factor - 1):  # levels are powers of two apart
        return None
    z = grid.top_level - (factor.bit_length() - 1)
    if z < 0 or box.left % span_x or box.top % span_y:
        return None
    if box.right > grid.size_x or box.bottom > grid.size_y:
        return None
    return z, box.left // span_x, box.top // span_y
