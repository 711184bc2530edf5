"""A chunk of the OME-Zarr view (common/zarrchunk.py): one raw tile, as zarr stores it.

The tile comes from :class:`~workers.synthesis.RawTiles` like every other answer's
pixels (a native read, the raw-tile cache, or synthesis from the level above), so a
chunk holds the same values as the tile, region and pixel endpoints, never a
re-encoded JPEG. It is laid out as the ``.zarray`` the api describes: the frame's bands
first (the ``c`` axis), then rows and columns, in the image's data type,
little-endian; the area past the level's content is zero (``fill_value``), since zarr
wants every chunk whole, edge chunks included.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from tilecast.common.zarrchunk import CODEC_LEVEL, ChunkRequest

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer


def chunk_pixels(
    pixels: np.ndarray, bands: int, dtype: np.dtype, content: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """(bands, height, width) of ``dtype``, little-endian: the (h, w, b) tile ``pixels``
    cut to its ``content`` (width, height) at the top left and zero elsewhere, in a
    chunk of ``size`` (width, height). A one-band tile of a many-band image (a grey JPEG
    in an RGB file) repeats its band, as the tile endpoints show it."""
    width, height = size
    content_w = min(content[0], pixels.shape[1], width)
    content_h = min(content[1], pixels.shape[0], height)
    if pixels.shape[2] < bands:
        pixels = np.repeat(pixels[:, :, :1], bands, axis=2)
    chunk = np.zeros((bands, height, width), dtype=dtype.newbyteorder("<"))
    area = pixels[:content_h, :content_w, :bands]
    chunk[:, :content_h, :content_w] = np.moveaxis(area, 2, 0)
    return chunk


def render_chunk(renderer: Renderer, request: ChunkRequest, generation: int) -> bytes:
    """The compressed chunk of ``request``."""
    source = renderer.open(request.source, generation)
    source.check_tile(request.z, request.x, request.y, request.frame)
    tiles = renderer.raw_tiles(source, request.source, generation)
    pixels = tiles.get(request.z, request.x, request.y, request.frame).array()
    grid = source.grid
    # The grid's content size, as a region reads the same tile (a file's stored level
    # may be a pixel smaller: its padding then shows, as in regions and tiles).
    content = grid.tile_size(request.z, request.x, request.y)
    size = (grid.tile_width, grid.tile_height)
    chunk = chunk_pixels(pixels, source.band_count, np.dtype(source.dtype), content, size)
    return zlib.compress(chunk.tobytes(), CODEC_LEVEL)
