"""An image's tile grid: its levels, the tiles of each level and their sizes.

Levels follow large_image: level ``levels - 1`` is the full resolution, each lower
level halves it (its size rounded up: ``ceil(size / 2**k)``), and level 0 fits in one
tile. Tiles are ``tile_width`` x ``tile_height`` at every level, counted from the top
left; a level's last column and row of tiles may reach past its content (edge tiles).

Everything that places tiles -- the api's range checks, prefetch and protocol
documents, job plans, the workers' readers and synthesis -- asks one :class:`Grid`,
built from the image's metadata, so they all agree on where a tile is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def level_count(size_x: int, size_y: int, tile_width: int, tile_height: int) -> int:
    """large_image's number of levels: enough halvings to fit the image in one tile.

    Its float logarithm is kept (not an integer bit count) so that tilecast answers as
    large_image does: it counts one level more where the ratio is exactly 2**29, 2**31
    or 2**39."""
    ratio = max(size_x / tile_width, size_y / tile_height)
    if ratio <= 1:
        return 1
    return max(1, math.ceil(math.log(ratio) / math.log(2)) + 1)


@dataclass(frozen=True)
class Grid:
    """The parts of an image's metadata that place its tiles (large_image's names:
    ``sizeX``, ``sizeY``, ``tileWidth``, ``tileHeight``, ``levels``)."""

    size_x: int
    size_y: int
    tile_width: int
    tile_height: int
    levels: int

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Grid:
        """The grid of a metadata record (``/item/{id}/tiles``'s fields); KeyError,
        TypeError or ValueError when the record lacks them."""
        return cls(
            size_x=int(meta["sizeX"]),
            size_y=int(meta["sizeY"]),
            tile_width=int(meta["tileWidth"]),
            tile_height=int(meta["tileHeight"]),
            levels=int(meta["levels"]),
        )

    @classmethod
    def for_image(cls, size_x: int, size_y: int, tile_width: int, tile_height: int) -> Grid:
        """The grid of an image with as many levels as large_image gives it."""
        levels = level_count(size_x, size_y, tile_width, tile_height)
        return cls(size_x, size_y, tile_width, tile_height, levels)

    @property
    def top_level(self) -> int:
        """The full-resolution level."""
        return self.levels - 1

    def scale(self, z: int) -> int:
        """How many full-resolution pixels one pixel of level ``z`` spans (a power of
        two; 1 at the top level)."""
        return 1 << (self.top_level - z)

    def level_size(self, z: int) -> tuple[int, int]:
        """Width and height of level ``z``: the full size divided by its scale,
        rounded up (a level read from a file may store another size)."""
        scale = self.scale(z)
        return -(-self.size_x // scale), -(-self.size_y // scale)

    def tiles_at(self, z: int) -> tuple[int, int]:
        """How many tiles level ``z`` has across and down."""
        width, height = self.level_size(z)
        return -(-width // self.tile_width), -(-height // self.tile_height)

    def contains(self, z: int, x: int, y: int) -> bool:
        """Whether (z, x, y) names a tile of the image."""
        if not 0 <= z < self.levels:
            return False
        across, down = self.tiles_at(z)
        return 0 <= x < across and 0 <= y < down

    def tile_size(
        self, z: int, x: int, y: int, level_size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """Width and height of the content of tile (z, x, y): the tile size, cropped at
        the level's edge (0 past it). ``level_size``, when given, is the level's own
        size (a file's stored level may differ from :meth:`level_size`)."""
        width, height = level_size or self.level_size(z)
        return (
            max(0, min(self.tile_width, width - x * self.tile_width)),
            max(0, min(self.tile_height, height - y * self.tile_height)),
        )

    def level_area(
        self, z: int, left: int, top: int, right: int, bottom: int
    ) -> tuple[int, int, int, int]:
        """The full-resolution area ``left..right`` x ``top..bottom`` (exclusive) in the
        pixels of level ``z``: widened to whole level pixels."""
        scale = self.scale(z)
        return left // scale, top // scale, -(-right // scale), -(-bottom // scale)

    def tiles_covering(
        self, z: int, left: int, top: int, right: int, bottom: int
    ) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, x1 and y1 exclusive: the tiles of level ``z`` that the
        area ``left..right`` x ``top..bottom`` of that level's pixels touches, within
        the level (an empty range for an area past its last tile)."""
        across, down = self.tiles_at(z)
        x0, y0 = left // self.tile_width, top // self.tile_height
        x1 = min(across, -(-right // self.tile_width))
        y1 = min(down, -(-bottom // self.tile_height))
        return x0, y0, max(x0, x1), max(y0, y1)

    def level_for(self, ratio: float) -> int:
        """The coarsest level whose resolution is at least ``ratio`` times the full
        resolution's (large_image's tile iterator rule: the base-2 logarithm of the
        ratio, rounded to four places, then up; within the levels)."""
        steps = math.ceil(round(math.log(ratio) / math.log(2), 4))
        return max(0, min(self.top_level, self.top_level + steps))

    def children(self, z: int, x: int, y: int) -> list[tuple[int, int]]:
        """``(x, y)`` of the tiles of level ``z + 1`` under tile (z, x, y), row by row:
        up to four, none under the full-resolution level."""
        if z + 1 >= self.levels:
            return []
        across, down = self.tiles_at(z + 1)
        return [
            (2 * x + dx, 2 * y + dy)
            for dy in (0, 1)
            for dx in (0, 1)
            if 2 * x + dx < across and 2 * y + dy < down
        ]
