"""How people browse a slide: a documented, seeded model of viewer sessions for the
time-to-full-view replay (tests/bench/bench_fullview.py).

Pure geometry and choices, no I/O: a session is a list of views, generated before the
replay starts, so that the runs with prefetch off and on replay the very same sessions.

The model (after how pathologists read whole-slide images: an overview, a dive to a
region of interest, a scan of it at one magnification, now and then a closer look):

- A session opens one image, picked with Zipf popularity (several viewers share the
  popular images), and shows it whole (OpenSeadragon's home view) in a
  ``viewport_width`` x ``viewport_height`` viewport.
- *Dive*: a region of interest is picked (uniformly in the middle 80% of the image);
  the viewer zooms in ``dive_min``-``dive_max`` levels, one level per view, each zoom
  moving the centre half-way to the region (a scroll-zoom keeps the point under the
  cursor in place, so the centre walks towards it).
- *Scan*: ``pans_min``-``pans_max`` pans at that level, each by ``pan_min``-``pan_max``
  of the viewport along a heading that drifts (a normal turn of ``turn_sigma``
  radians per pan: people sweep a region in one direction, not in a random walk),
  turning back at the image's edge. With probability ``p_detail`` a pan is instead a
  closer look: zoom in one level on the centre, then back out on the next view.
- Then the viewer goes home (the overview, all cached by now) and dives to the next
  region, until the session has ``views`` views.
- Between views the viewer looks for ``think_min``-``think_max`` seconds.

What a view asks for is OpenSeadragon's loading order (tests/bench/load_viewer.py's
:meth:`View.tiles`): every level from 0 up to the target level, coarse levels first,
each level's tiles nearest the centre first, over the viewport plus ``margin`` level
pixels; the replay leaves out the tiles the viewer already has (the browser cache).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.load_viewer import ImageGeometry, TileId, View, ViewerConfig, popularity

OPEN = "open"
ZOOM_IN = "zoom in"
ZOOM_OUT = "zoom out"
PAN = "pan"
HOME = "home"


@dataclass(frozen=True)
class BrowseConfig:
    viewport_width: int = 1600
    viewport_height: int = 1000
    margin: int = 64  # level pixels around the viewport (pan and zoom animations)
    dive_min: int = 2  # levels zoomed in from the overview to a region
    dive_max: int = 4
    pans_min: int = 4  # pans at the region's level before going home
    pans_max: int = 10
    pan_min: float = 0.3  # a pan moves the view by this fraction of the viewport ...
    pan_max: float = 0.7  # ... up to this one
    turn_sigma: float = 0.35  # radians the heading drifts per pan
    p_detail: float = 0.12  # a pan is instead a closer look (zoom in, then out)
    think_min: float = 1.0  # seconds a viewer looks at a view
    think_max: float = 3.0
    zipf_exponent: float = 1.0

    @property
    def viewer(self) -> ViewerConfig:
        """The viewport as load_viewer's geometry takes it."""
        return ViewerConfig(
            viewport_width=self.viewport_width,
            viewport_height=self.viewport_height,
            margin=self.margin,
        )


@dataclass(frozen=True)
class ViewStep:
    """One view of a session: what the viewer did to land on it, every tile it shows
    (loading order), and how long the viewer looks at it afterwards."""

    action: str
    tiles: list[TileId]
    think: float


@dataclass(frozen=True)
class Session:
    image: int
    views: list[ViewStep]


def session(
    seed: int, geometries: Sequence[ImageGeometry], views: int, config: BrowseConfig
) -> Session:
    """One viewer's ``views`` views, determined by ``seed``."""
    rng = random.Random(seed)
    weights = popularity(len(geometries), config.zipf_exponent)
    image = rng.choices(range(len(geometries)), weights)[0]
    geometry = geometries[image]
    viewer = config.viewer
    view = View.home(geometry, viewer)
    steps: list[ViewStep] = []

    def show(action: str) -> None:
        steps.append(
            ViewStep(action, view.tiles(viewer), rng.uniform(config.think_min, config.think_max))
        )

    show(OPEN)
    while len(steps) < views:
        if steps[-1].action != OPEN:
            view.cx, view.cy, view.bpp = geometry.size_x / 2, geometry.size_y / 2, view.home_bpp
            show(HOME)
        roi_x = rng.uniform(0.1, 0.9) * geometry.size_x
        roi_y = rng.uniform(0.1, 0.9) * geometry.size_y
        for _ in range(rng.randint(config.dive_min, config.dive_max)):
            if view.bpp <= 1.0 or len(steps) >= views:
                break
            view.cx += (roi_x - view.cx) / 2
            view.cy += (roi_y - view.cy) / 2
            view.bpp = max(1.0, view.bpp / 2)
            show(ZOOM_IN)
        heading = rng.uniform(0, 2 * math.pi)
        for _ in range(rng.randint(config.pans_min, config.pans_max)):
            if len(steps) >= views:
                break
            if rng.random() < config.p_detail and view.bpp > 1.0 and len(steps) + 1 < views:
                view.bpp /= 2
                show(ZOOM_IN)
                view.bpp *= 2
                show(ZOOM_OUT)
                continue
            heading += rng.gauss(0.0, config.turn_sigma)
            frac = rng.uniform(config.pan_min, config.pan_max)
            view.cx += math.cos(heading) * frac * config.viewport_width * view.bpp
            view.cy += math.sin(heading) * frac * config.viewport_height * view.bpp
            # Keep the centre on the image; turn back at an edge.
            if not 0.0 <= view.cx <= geometry.size_x:
                heading = math.pi - heading
            if not 0.0 <= view.cy <= geometry.size_y:
                heading = -heading
            view.cx = min(max(view.cx, 0.0), float(geometry.size_x))
            view.cy = min(max(view.cy, 0.0), float(geometry.size_y))
            show(PAN)
    return Session(image, steps[:views])


def sessions(
    seed: int, geometries: Sequence[ImageGeometry], viewers: int, views: int, config: BrowseConfig
) -> list[Session]:
    """The sessions of ``viewers`` concurrent viewers."""
    return [session(seed * 1_000_003 + i, geometries, views, config) for i in range(viewers)]
