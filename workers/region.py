"""Regions and pixels, read from the raw-tile cache like tiles are.

A region (``GET /item/{id}/tiles/region``) is planned by common/regionplan.py (which
level, which area of it, what output size: large_image's rules), assembled from that
level's unstyled tiles through :class:`~workers.synthesis.RawTiles` (so it shares the
raw-tile cache, native reads and synthesized levels with tiles), styled through
``Renderer.style_pixels`` (which reads the same area of other frames when a style
asks), resampled the way large_image's ``getRegion`` does, then encoded.

Resampling follows ``getRegion`` step for step, since its choices decide the pixels:
8-bit data (and anything but single-band uint16) is converted to 8 bits, to ``RGBA``
for PNG and TIFF output or ``RGB`` for the others, and resized by PIL with LANCZOS
(down) or BICUBIC (up); single-band uint16 data is subsampled (nearest neighbour) and
keeps its 16 bits. The result equals large_image's wherever both read the same level
pixels (every native level).

A pixel (``GET /item/{id}/tiles/pixel``) is one full-resolution pixel: its raw values
and its 8-bit ``l``/``la``/``rgb``/``rgba`` rendering, as large_image's ``getPixel``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image

from tilecast.common.fill import fill_color
from tilecast.common.regionplan import Optics, RegionPlan
from tilecast.common.regions import PixelRequest, RegionRequest
from tilecast.workers.encode import encode_pixels, to_uint8, unstyled_pixels
from tilecast.workers.synthesis import RawTiles

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer

# large_image's tile iterator mode: RGBA for formats that keep alpha, else RGB.
ALPHA_FORMATS = frozenset({"PNG", "TIFF"})
PIXEL_CHANNELS = {1: "l", 2: "la", 3: "rgb", 4: "rgba"}


def assemble_area(
    tiles: RawTiles, z: int, frame: int, left: int, top: int, right: int, bottom: int
) -> np.ndarray:
    """The area ``left..right`` x ``top..bottom`` (exclusive) of level ``z`` as one
    (height, width, bands) array of the source's dtype, from raw tiles (one cache round
    trip per row of tiles, which bounds the bytes in flight)."""
    source = tiles.source
    tw, th = source.tile_width, source.tile_height
    first_x, first_y, end_x, end_y = source.grid.tiles_covering(z, left, top, right, bottom)
    area: np.ndarray | None = None
    for ty in range(first_y, end_y):
        columns = range(first_x, end_x)
        row = tiles.get_many(z, [(tx, ty) for tx in columns], frame)
        for tx, tile in zip(columns, row, strict=True):
            pixels = tile.array()
            if area is None:
                area = np.zeros((bottom - top, right - left, pixels.shape[2]), pixels.dtype)
            x0, x1 = max(left, tx * tw), min(right, (tx + 1) * tw)
            y0, y1 = max(top, ty * th), min(bottom, (ty + 1) * th)
            area[y0 - top : y1 - top, x0 - left : x1 - left] = pixels[
                y0 - ty * th : y1 - ty * th, x0 - tx * tw : x1 - tx * tw, : area.shape[2]
            ]
    if area is None:  # an area past the level's last tile: nothing to read
        return np.zeros((bottom - top, right - left, source.band_count), source.dtype)
    return area


def resample(pixels: np.ndarray, width: int, height: int, fmt: str) -> np.ndarray:
    """``pixels`` at ``width`` x ``height``, as large_image's ``getRegion`` scales."""
    in_h, in_w, bands = pixels.shape
    if (in_w, in_h) == (width, height):
        return pixels
    if pixels.dtype == np.uint16 and bands == 1:
        cols = [int(i * in_w / width) for i in range(width)]
        rows = [int(i * in_h / height) for i in range(height)]
        return np.take(np.take(pixels, rows, axis=0), cols, axis=1)
    eight = to_uint8(pixels)
    image = PIL.Image.fromarray(eight[:, :, 0] if eight.shape[2] == 1 else eight)
    mode = "RGBA" if fmt in ALPHA_FORMATS else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    kernel = PIL.Image.Resampling.BICUBIC if width > in_w else PIL.Image.Resampling.LANCZOS
    resized = np.asarray(image.resize((width, height), kernel))
    return resized if resized.ndim == 3 else resized[:, :, np.newaxis]


def render_region(renderer: Renderer, request: RegionRequest, generation: int) -> bytes:
    styled = renderer.styled(request, generation)
    source = styled.source
    source.check_tile(source.levels - 1, 0, 0, request.frame)
    plan = request.plan(
        grid=source.grid,
        max_pixels=renderer.settings.max_region_pixels,
        native=lambda z: source.is_native_level(z, request.frame),
        optics=Optics.of(source.metadata),
    )
    tiles = renderer.raw_tiles(source, request.source, generation)

    def read(frame: int) -> np.ndarray:
        return read_plan(tiles, plan, frame)

    encoding = styled.encoding
    if styled.style is None:
        pixels = resample(read(request.frame), plan.out_width, plan.out_height, encoding.format)
        pixels = unstyled_pixels(pixels, encoding)
    else:
        pixels = renderer.style_pixels(styled, tiles, request.frame, read)
        pixels = resample(pixels, plan.out_width, plan.out_height, encoding.format)
    if request.fill is not None and request.width and request.height:
        pixels = letterbox(pixels, request.width, request.height, request.fill, encoding.format)
    return encode_pixels(pixels, encoding)


def letterbox(pixels: np.ndarray, width: int, height: int, fill: str, fmt: str) -> np.ndarray:
    """large_image's ``_letterboxImage`` as ``getRegion`` calls it: the pixels in 8 bits
    and its output mode (RGBA for PNG and TIFF, else RGB), padded with ``fill`` to at
    least ``width`` x ``height`` -- centred (offsets rounded down), or top left for
    ``corner:`` -- never cropped."""
    mode = "RGBA" if fmt in ALPHA_FORMATS else "RGB"
    eight = to_uint8(pixels)
    image = PIL.Image.fromarray(eight[:, :, 0] if eight.shape[2] == 1 else eight)
    if image.mode != mode:
        image = image.convert(mode)
    if image.width >= width and image.height >= height:
        return np.asarray(image)
    color, corner = fill_color(fill)
    box_w, box_h = max(width, image.width), max(height, image.height)
    boxed = PIL.Image.new(mode, (box_w, box_h), color[: len(mode)])
    where = (0, 0) if corner else ((box_w - image.width) // 2, (box_h - image.height) // 2)
    boxed.paste(image, where)
    return np.asarray(boxed)


def read_plan(tiles: RawTiles, plan: RegionPlan, frame: int) -> np.ndarray:
    return assemble_area(tiles, plan.level, frame, plan.left, plan.top, plan.right, plan.bottom)


def pixel_values(renderer: Renderer, request: PixelRequest, generation: int) -> dict[str, Any]:
    """large_image's ``getPixel`` answer: ``{}`` outside the image, else ``value`` (the
    raw band values) and the 8-bit channels by name (``l``, ``a``, ``r``, ``g``, ``b``)."""
    source = renderer.open(request.source, generation)
    top_level = source.levels - 1
    source.check_tile(top_level, 0, 0, request.frame)
    where = request.locate(source.size_x, source.size_y, Optics.of(source.metadata))
    if where is None:
        return {}
    x, y = where
    tiles = renderer.raw_tiles(source, request.source, generation)
    tw, th = source.tile_width, source.tile_height
    values = tiles.get(top_level, x // tw, y // th, request.frame).array()[y % th, x % tw]
    result: dict[str, Any] = {"value": [v.item() for v in values]}
    eight = to_uint8(values[np.newaxis, np.newaxis, :])[0, 0]
    result.update(zip(PIXEL_CHANNELS[len(eight)], (int(v) for v in eight), strict=True))
    return result


def json_bytes(value: Any) -> bytes:
    """What the cache holds for a JSON answer (pixel, histogram, bands): compact UTF-8.
    NaN and infinities (float data has them) are not JSON, and browsers' ``JSON.parse``
    refuses them: they are sent as null."""
    return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
