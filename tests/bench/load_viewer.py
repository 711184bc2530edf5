"""A simulated viewer: which tiles an OpenSeadragon-like viewer asks for, step by step.

Pure geometry and choices, no I/O, so it is deterministic for a seed and testable alone.
The load generator (tests/bench/load_client.py) sends what it yields over HTTP.

The model, after OpenSeadragon's defaults with a large_image tile source:

- The view is a ``viewport_width`` x ``viewport_height`` screen-pixel window and a zoom,
  ``bpp`` (base-image pixels per screen pixel). Opening an image shows it whole (OSD's
  home view): ``bpp`` fits the image in the viewport.
- The target level is the coarsest level that is still at least as sharp as the screen
  (its pixels per screen pixel in [1, 2)): at a power-of-two zoom a 1600x900 viewport
  covers about 7x4 tiles of it.
- A step asks for the tiles covering the viewport (plus ``margin`` level pixels around
  it, as the pan and zoom animations touch) at every level from 0 up to the target,
  coarse levels first (OSD fills the view from the levels below the target while the
  target loads), each level's tiles nearest the centre first. Tiles the viewer already
  loaded are not asked again: the browser caches them (tilecast sends
  ``Cache-Control: max-age``).
- Between steps the user pans by a fraction of the viewport or zooms in or out by one
  level, after a short think time; after a few steps they open another image, picked by
  popularity (a Zipf law over the images: several viewers share the popular ones).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tilecast.common.grid import Grid

TileId = tuple[int, int, int]  # (z, x, y), z = 0 the coarsest level


class ImageGeometry(Grid):
    """What a viewer reads from ``GET /item/{id}/tiles``: the image's tile grid, and
    the level a zoom shows."""

    def target_level(self, bpp: float) -> int:
        """The target level of a zoom: the coarsest level with at least one of its
        pixels per screen pixel (the base level when zoomed in past it)."""
        coarser = math.floor(math.log2(max(bpp, 1.0)) + 1e-9)
        return max(0, self.top_level - coarser)


@dataclass(frozen=True)
class ViewerConfig:
    viewport_width: int = 1600
    viewport_height: int = 900
    margin: int = 64  # level pixels around the viewport
    pan_min: float = 0.2  # a pan moves the view by this fraction of the viewport ...
    pan_max: float = 0.6  # ... up to this one
    p_pan: float = 0.6
    p_zoom_in: float = 0.28  # the rest (0.12) zooms out
    steps_min: int = 8  # steps on one image before opening another
    steps_max: int = 30
    think_min: float = 0.3  # seconds between steps
    think_max: float = 1.5
    zipf_exponent: float = 1.0


@dataclass
class View:
    """Where a viewer looks at one image."""

    geometry: ImageGeometry
    cx: float  # the centre, in base pixels
    cy: float
    bpp: float  # base pixels per screen pixel
    home_bpp: float
    heading: float = 0.0  # the direction of the last pan, in radians

    @classmethod
    def home(cls, geometry: ImageGeometry, config: ViewerConfig, heading: float = 0.0) -> View:
        fit = max(geometry.size_x / config.viewport_width, geometry.size_y / config.viewport_height)
        bpp = max(fit, 1.0)
        return cls(geometry, geometry.size_x / 2, geometry.size_y / 2, bpp, bpp, heading)

    @property
    def level(self) -> int:
        return self.geometry.target_level(self.bpp)

    def tiles(self, config: ViewerConfig) -> list[TileId]:
        """Every tile of the view, coarse levels first, nearest the centre first."""
        out: list[TileId] = []
        half_w = config.viewport_width * self.bpp / 2
        half_h = config.viewport_height * self.bpp / 2
        target = self.level
        for z in range(target + 1):
            s = self.geometry.scale(z)
            margin = config.margin * s
            nx, ny = self.geometry.tiles_at(z)
            tw, th = self.geometry.tile_width * s, self.geometry.tile_height * s
            x0 = max(0, math.floor((self.cx - half_w - margin) / tw))
            x1 = min(nx - 1, math.floor((self.cx + half_w + margin) / tw))
            y0 = max(0, math.floor((self.cy - half_h - margin) / th))
            y1 = min(ny - 1, math.floor((self.cy + half_h + margin) / th))
            level = [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
            cx, cy = self.cx, self.cy
            level.sort(key=lambda t: ((t[1] + 0.5) * tw - cx) ** 2 + ((t[2] + 0.5) * th - cy) ** 2)
            out.extend(level)
        return out

    def move(self, rng: random.Random, config: ViewerConfig) -> str:
        """One user action; returns its name ("pan", "zoom in", "zoom out")."""
        can_in = self.bpp > 1.0
        can_out = self.bpp < self.home_bpp
        # At the home view the whole image is in sight: panning shows nothing new.
        roll = rng.random() if can_out else 0.0
        if roll < config.p_zoom_in and can_in:
            # Zoom in on something off-centre (within the middle half of the view).
            self.cx += rng.uniform(-0.25, 0.25) * config.viewport_width * self.bpp
            self.cy += rng.uniform(-0.25, 0.25) * config.viewport_height * self.bpp
            self.bpp = max(1.0, self.bpp / 2)
            action = "zoom in"
        elif roll < 1 - config.p_pan and can_out:
            self.bpp = min(self.home_bpp, self.bpp * 2)
            action = "zoom out"
        else:
            # People scan a slide in one direction for a while, not in a random walk.
            self.heading += rng.gauss(0.0, 0.7)
            angle = self.heading
            frac = rng.uniform(config.pan_min, config.pan_max)
            self.cx += math.cos(angle) * frac * config.viewport_width * self.bpp
            self.cy += math.sin(angle) * frac * config.viewport_height * self.bpp
            action = "pan"
        # OSD keeps part of the image in view; keep the centre on the image, and turn
        # back at an edge.
        if not 0.0 <= self.cx <= self.geometry.size_x:
            self.heading = math.pi - self.heading
        if not 0.0 <= self.cy <= self.geometry.size_y:
            self.heading = -self.heading
        self.cx = min(max(self.cx, 0.0), float(self.geometry.size_x))
        self.cy = min(max(self.cy, 0.0), float(self.geometry.size_y))
        return action


def popularity(count: int, exponent: float) -> list[float]:
    """Zipf weights of ``count`` images ranked by popularity (rank 1 the most viewed)."""
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


@dataclass(frozen=True)
class Step:
    """What the viewer does next: ``tiles`` of ``image`` (already minus the ones it has),
    after ``think`` seconds; ``opens`` when it first opens that image (a metadata request)."""

    image: int
    tiles: list[TileId]
    think: float
    opens: bool
    action: str


class Viewer:
    """One simulated user: an endless, seeded sequence of :class:`Step`."""

    def __init__(
        self,
        seed: int,
        geometries: Sequence[ImageGeometry],
        config: ViewerConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.geometries = list(geometries)
        self.config = config or ViewerConfig()
        self.weights = popularity(len(self.geometries), self.config.zipf_exponent)
        self.loaded: set[tuple[int, TileId]] = set()  # the browser's cache
        self.image = -1
        self.view: View | None = None
        self.steps_left = 0

    def next_step(self) -> Step:
        config = self.config
        if self.view is None or self.steps_left <= 0:
            self.image = self.rng.choices(range(len(self.geometries)), self.weights)[0]
            heading = self.rng.uniform(0, 2 * math.pi)
            self.view = View.home(self.geometries[self.image], config, heading)
            self.steps_left = self.rng.randint(config.steps_min, config.steps_max)
            opens, action = True, "open"
            think = self.rng.uniform(config.think_min, config.think_max)
        else:
            action = self.view.move(self.rng, config)
            opens = False
            think = self.rng.uniform(config.think_min, config.think_max)
        self.steps_left -= 1
        wanted = []
        for tile in self.view.tiles(config):
            if (self.image, tile) not in self.loaded:
                self.loaded.add((self.image, tile))
                wanted.append(tile)
        return Step(self.image, wanted, think, opens, action)
