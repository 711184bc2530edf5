"""Where a viewer goes next, from the tiles it asked for: the prefetch's plan (pure geometry).

The tiles a viewer asked for, hits and misses (api/miss/viewers.py keeps the last
``HISTORY`` of each viewer and image, newest last), tell where it looks and where it is
heading, without any help from the viewer: a viewer asks only for tiles it does not
hold, so what it asks is what its views uncover.

- its *level* is the finest level among its last ``LEVEL_WINDOW`` tiles (OpenSeadragon
  loads coarse levels first, then the level the view shows);
- its *view* is the box around its last ``VIEW_WINDOW`` tiles at that level (a fresh
  view asks for all of its tiles; a pan asks for the band it uncovers);
- its *direction of travel* is where its latest tiles at that level lie from the
  view: the centroid of the newest third of them minus the view's centroid, in tiles.
  A pan uncovers a band on its leading side, so the newest tiles lie ahead; a fresh
  view loads from the centre outwards, all around, so its newest tiles (the rim)
  centre on the view.

The plan: when the viewer travels (the centroids at least ``MIN_TRAVEL`` tiles apart),
the tiles one pan further along that direction (the view shifted by half its extent
along the direction, less the view itself), nearest the view first; when it does not
but its last change of level was a zoom in (it is diving into a region), the next finer
level under the middle half of its view, centre first. Both are in tile coordinates;
:func:`plan` leaves out tiles outside the image. What is cached, in flight or over budget
is the caller's to drop (api/miss/prefetch.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tilecast.common.grid import Grid

TileId = tuple[int, int, int]  # (z, x, y)

HISTORY = 64
LEVEL_WINDOW = 16
VIEW_WINDOW = 40
MIN_TRAVEL = 1.0
MIN_TILES = 6  # fewer tiles at the level tell nothing yet


@dataclass(frozen=True)
class Heading:
    """What the asked tiles say: the level, the view's box there (inclusive tile bounds),
    the direction of travel (tiles; (0, 0) when none) and whether it is diving."""

    level: int
    x0: int
    y0: int
    x1: int
    y1: int
    dx: float
    dy: float
    diving: bool

    @property
    def travelling(self) -> bool:
        return math.hypot(self.dx, self.dy) >= MIN_TRAVEL


def heading(history: Sequence[TileId]) -> Heading | None:
    """Read the viewer's level, view and direction from its asked tiles (oldest first);
    None when they are too few to say."""
    if not history:
        return None
    level = max(z for z, _x, _y in history[-LEVEL_WINDOW:])
    at_level = [(x, y) for z, x, y in history if z == level]
    if len(at_level) < MIN_TILES:
        return None
    view = at_level[-VIEW_WINDOW:]
    recent = view[-max(MIN_TILES, len(view) // 3) :]
    view_x, view_y = _centroid(view)
    recent_x, recent_y = _centroid(recent)
    return Heading(
        level=level,
        x0=min(x for x, _y in view),
        y0=min(y for _x, y in view),
        x1=max(x for x, _y in view),
        y1=max(y for _x, y in view),
        dx=recent_x - view_x,
        dy=recent_y - view_y,
        diving=_diving(history, level),
    )


def _centroid(tiles: Sequence[tuple[int, int]]) -> tuple[float, float]:
    return sum(x for x, _y in tiles) / len(tiles), sum(y for _x, y in tiles) / len(tiles)


def _diving(history: Sequence[TileId], level: int) -> bool:
    """Whether the viewer's last change of level went finer: tiles at a coarser level
    came before its tiles at ``level`` (a pan at one level asks for that level only)."""
    for z, _x, _y in reversed(history):
        if z != level:
            return z < level
    return False


def ahead(h: Heading) -> list[TileId]:
    """The tiles one pan further along the direction of travel: the view shifted by
    half its extent along the direction, less the view; nearest the view first."""
    width, height = h.x1 - h.x0 + 1, h.y1 - h.y0 + 1
    norm = math.hypot(h.dx, h.dy)
    ux, uy = h.dx / norm, h.dy / norm
    # Half the view's extent along the direction (an average pan is half a viewport).
    shift = 0.5 * (abs(ux) * width + abs(uy) * height)
    sx, sy = round(ux * shift), round(uy * shift)
    out = [
        (h.level, x, y)
        for y in range(h.y0 + sy, h.y1 + sy + 1)
        for x in range(h.x0 + sx, h.x1 + sx + 1)
        if not (h.x0 <= x <= h.x1 and h.y0 <= y <= h.y1)
    ]
    # Nearest the view first: the band the next pan uncovers before the far side.
    cx, cy = (h.x0 + h.x1) / 2, (h.y0 + h.y1) / 2
    out.sort(key=lambda t: (t[1] - cx) * ux + (t[2] - cy) * uy)
    return out


def under(h: Heading) -> list[TileId]:
    """The next finer level's tiles under the middle half of the view, centre first."""
    width, height = h.x1 - h.x0 + 1, h.y1 - h.y0 + 1
    cx, cy = (h.x0 + h.x1 + 1) / 2, (h.y0 + h.y1 + 1) / 2  # the centre, in level tiles
    x0, x1 = math.floor(cx - width / 4), math.ceil(cx + width / 4)
    y0, y1 = math.floor(cy - height / 4), math.ceil(cy + height / 4)
    out = [(h.level + 1, x, y) for y in range(2 * y0, 2 * y1) for x in range(2 * x0, 2 * x1)]
    out.sort(key=lambda t: (t[1] + 0.5 - 2 * cx) ** 2 + (t[2] + 0.5 - 2 * cy) ** 2)
    return out


def plan(history: Sequence[TileId], grid: Grid) -> list[TileId]:
    """The tiles the viewer who asked for ``history`` likely needs next, most likely
    first; tiles outside the image left out."""
    h = heading(history)
    if h is None:
        return []
    if h.travelling:
        wanted = ahead(h)
    elif h.diving and h.level < grid.top_level:
        wanted = under(h)
    else:
        return []
    return [t for t in wanted if grid.contains(*t)]
