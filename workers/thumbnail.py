"""Whole-image thumbnails and overviews, assembled from raw tiles through the cache.

Sizing follows large_image's ``getThumbnail`` -> ``getRegion``: the output fits in
width x height with the aspect ratio kept (``_calculateWidthHeight``: one side alone
is bounded by 16x the other; neither given means 256 x 256). Note that large_image
does *upsample*: a 100 x 50 image asked at 256 gives 256 x 128 (bicubic); so does
this module. The pixels come from the coarsest level that is at least the output
size, read as raw tiles (cached, native or synthesized), styled, resized with libvips
(lanczos3 down, bicubic up) and encoded. The whole-image statistics styles need are
workers/bandstats.py's (it reads its overview with ``assemble_level``).
"""

from __future__ import annotations

import numpy as np

from tilecast.common.grid import Grid
from tilecast.common.regionplan import output_size as fit_size
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.synthesis import RawTiles
from tilecast.workers.vipsutil import from_numpy, to_numpy

DEFAULT_SIZE = 256


def output_size(
    width: int | None, height: int | None, region_w: int, region_h: int
) -> tuple[int, int]:
    """large_image's ``_calculateWidthHeight`` as its thumbnails use it: ``None`` or 0
    is unconstrained, and neither side given means 256 x 256."""
    if not width and not height:
        width = height = DEFAULT_SIZE
    return fit_size(width, height, region_w, region_h)


def level_for_output(grid: Grid, out_w: int, out_h: int) -> int:
    """The coarsest level whose resolution is at least out_w x out_h (large_image's
    tile iterator rule)."""
    if out_w == grid.size_x and out_h == grid.size_y:
        return grid.top_level
    return grid.level_for(min(out_w / grid.size_x, out_h / grid.size_y))


def assemble_level(tiles: RawTiles, z: int, frame: int = 0) -> np.ndarray:
    """The whole of level ``z`` as one (height, width, bands) array.

    The region is large_image's (the full-resolution size divided by the level's
    scale, rounded *down*, at least one pixel -- where the grid's level sizes round
    up), within the level's content.
    """
    source = tiles.source
    grid = source.grid
    scale = grid.scale(z)
    level_w, level_h = source.level_size(z, frame)
    width = max(1, min(level_w, source.size_x // scale))
    height = max(1, min(level_h, source.size_y // scale))
    tw, th = source.tile_width, source.tile_height
    _x0, _y0, across, down = grid.tiles_covering(z, 0, 0, width, height)
    region: np.ndarray | None = None
    for ty in range(down):
        # One cache round trip per row of tiles bounds the bytes in flight.
        row = tiles.get_many(z, [(tx, ty) for tx in range(across)], frame)
        for tx, tile in enumerate(row):
            pixels = tile.array()
            if region is None:
                region = np.zeros((height, width, pixels.shape[2]), dtype=pixels.dtype)
            x0, y0 = tx * tw, ty * th
            w, h = min(tw, width - x0), min(th, height - y0)
            region[y0 : y0 + h, x0 : x0 + w] = pixels[:h, :w, : region.shape[2]]
    assert region is not None
    return region


def thumbnail_level(source: ImageSource, width: int, height: int) -> tuple[int, int, int]:
    """``(z, out_w, out_h)``: the output size of a thumbnail fitted into width x height
    and the level it is made from."""
    out_w, out_h = output_size(width, height, source.size_x, source.size_y)
    z = level_for_output(source.grid, out_w, out_h)
    return z, out_w, out_h


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """8-bit pixels resized to exactly width x height."""
    in_h, in_w = pixels.shape[:2]
    if (in_w, in_h) == (width, height):
        return pixels
    image = from_numpy(pixels)
    kernel = "cubic" if width > in_w else "lanczos3"
    image = image.resize(width / in_w, vscale=height / in_h, kernel=kernel)
    if (image.width, image.height) != (width, height):
        # libvips rounds output sizes; settle the last pixel by copying the edge.
        image = image.crop(0, 0, min(width, image.width), min(height, image.height))
        image = image.embed(0, 0, width, height, extend="copy")
    return to_numpy(image)
