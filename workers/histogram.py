"""Histograms and band information of an area, computed by workers with numpy.

``GET /item/{id}/tiles/histogram`` answers what large_image's girder endpoint answers:
its ``histogram`` over the pixels its tile iterator yields for ``width`` x ``height``:
the level it reads, resampled to that size tile by tile (:func:`resampled_tiles`)
unless ``resample`` is false or the level is that size already; per band
``min``, ``max``, ``mean``, ``stdev``, ``range``, ``hist``, ``bin_edges``, ``bins``,
``samples`` and ``density``, numbers cast to float as that endpoint casts them.
``onlyMinMax`` gives ``{min, max, mean, stdev}`` lists (large_image's own endpoint fails
on it: it indexes the missing ``histogram`` key).

``GET /item/{id}/tiles/bands`` is ``getBandInformation(statistics=True)``: per band
(keys "1", "2", ...) its interpretation and min / max / mean / stdev over at most
2048 x 2048 pixels of the frame. large_image remembers the first frame's answer on
the tile source and returns it for every later frame; tilecast computes each frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image

from tilecast.common.regionplan import Optics, RegionAsk, RegionPlan, RegionSpec, plan_region
from tilecast.common.regions import BANDS_ANALYSIS_SIZE, BandsRequest, HistogramRequest
from tilecast.workers.encode import to_uint8
from tilecast.workers.region import read_plan

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer

BAND_INTERPRETATIONS: dict[int, tuple[str, ...]] = {
    1: ("gray",),
    2: ("gray", "alpha"),
    3: ("red", "green", "blue"),
    4: ("red", "green", "blue", "alpha"),
}
STATS_SLICE = 1 << 18  # pixels per slice of the float sums of wide data types


@dataclass(frozen=True)
class BandSummary:
    """One band of an area, summarized once for its statistics and histograms.

    8- and 16-bit integer bands are reduced to their distinct values and counts (one
    ``bincount``): min, max, sums and every histogram follow from those exactly, and
    ``np.histogram`` of the values weighted by their counts puts each value in the bin
    it would put each pixel in. Other types keep the plane itself.
    """

    dtype: np.dtype
    count: int
    min: Any
    max: Any
    mean: float
    stdev: float
    values: np.ndarray | None = None  # distinct values (small integer types)
    counts: np.ndarray | None = None  # how many pixels hold each
    plane: np.ndarray | None = None  # the band itself (other types)

    def histogram(self, bins: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        if self.values is not None:
            hist, edges = np.histogram(self.values, bins, (low, high), weights=self.counts)
            return hist.astype(np.int64), edges
        return np.histogram(self.plane, bins, (low, high))


def summarize(pixels: np.ndarray) -> list[BandSummary]:
    return [_summarize_band(pixels[:, :, band]) for band in range(pixels.shape[2])]


def _summarize_band(band: np.ndarray) -> BandSummary:
    dtype = band.dtype
    count = band.size
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        low = int(band.min())
        tally = np.bincount(np.ascontiguousarray(band).ravel().astype(np.int32) - low)
        present = np.flatnonzero(tally)
        values = (present + low).astype(np.float64)
        counts = tally[present].astype(np.float64)
        total = float(values @ counts)
        squares = float((values * values) @ counts)
        return _summary(dtype, count, dtype.type(low), dtype.type(values[-1]), total, squares,
                        values=values, counts=counts)  # fmt: skip
    plane = np.ascontiguousarray(band)
    flat = plane.ravel()
    total = squares = 0.0
    # In slices: a float64 copy of a whole 4096 x 4096 band would cost 128 MB.
    for start in range(0, flat.size, STATS_SLICE):
        part = flat[start : start + STATS_SLICE].astype(np.float64)
        total += float(part.sum())
        squares += float(part @ part)
    return _summary(dtype, count, flat.min(), flat.max(), total, squares, plane=plane)


def _summary(
    dtype: np.dtype, count: int, low: Any, high: Any, total: float, squares: float, **data: Any
) -> BandSummary:
    """Mean and stdev as large_image derives them from its sums."""
    mean = total / max(1, count)
    stdev = max(squares / max(1, count) - mean * mean, 0.0) ** 0.5
    return BandSummary(dtype, count, low, high, mean, stdev, **data)


def histogram(renderer: Renderer, request: HistogramRequest, generation: int) -> Any:
    source = renderer.open(request.source, generation)
    source.check_tile(source.levels - 1, 0, 0, request.frame)
    plan = request.plan(
        grid=source.grid,
        max_pixels=renderer.settings.max_region_pixels,
        native=lambda z: source.is_native_level(z, request.frame),
        optics=Optics.of(source.metadata),
    )
    tiles = renderer.raw_tiles(source, request.source, generation)
    pixels = read_plan(tiles, plan, request.frame)
    if request.resample and round(plan.scale, 2) != 1.0:
        pixels = resampled_tiles(pixels, plan, source.tile_width, source.tile_height)
    bands = summarize(pixels)
    if request.only_min_max:
        return {
            "min": [band.min.item() for band in bands],
            "max": [band.max.item() for band in bands],
            "mean": [band.mean for band in bands],
            "stdev": [band.stdev for band in bands],
        }
    return [_band_histogram(band, request) for band in bands]


def resampled_tiles(
    pixels: np.ndarray, plan: RegionPlan, tile_width: int, tile_height: int
) -> np.ndarray:
    """The samples large_image's resampling tile iterator yields for ``pixels`` (the
    plan's area of its level), as one (n, 1, bands) column: the level is cut into tiles
    of the source's tile size times ``plan.scale`` (rounded up), aligned to the level's
    origin and clipped to the area, and each tile is resized on its own by PIL with
    LANCZOS to its size divided by the scale (rounded down, at least 1) -- in 8 bits,
    as its ``_imageToPIL`` makes them."""
    scale = plan.scale
    step_x = max(1, math.ceil(tile_width * scale))
    step_y = max(1, math.ceil(tile_height * scale))
    eight = to_uint8(pixels)
    pieces = []
    for y0 in _cuts(plan.top, plan.bottom, step_y):
        for x0 in _cuts(plan.left, plan.right, step_x):
            y1, x1 = min(plan.bottom, y0 + step_y), min(plan.right, x0 + step_x)
            y0, x0 = max(plan.top, y0), max(plan.left, x0)
            tile = eight[y0 - plan.top : y1 - plan.top, x0 - plan.left : x1 - plan.left]
            image = PIL.Image.fromarray(tile[:, :, 0] if tile.shape[2] == 1 else tile)
            size = (max(1, int(image.width / scale)), max(1, int(image.height / scale)))
            resized = np.asarray(image.resize(size, PIL.Image.Resampling.LANCZOS))
            pieces.append(resized.reshape(-1, 1, tile.shape[2]))
    return np.concatenate(pieces, axis=0)


def _cuts(start: int, end: int, step: int) -> range:
    """Where the tiles of a ``step`` grid from 0 that cover ``start..end`` begin."""
    first = start // step
    last = max(math.ceil(end / step), first + 1)
    return range(first * step, last * step, step)


def _band_histogram(band: BandSummary, request: HistogramRequest) -> dict[str, Any]:
    low, high = float(band.min), float(band.max)
    bins = request.bins
    if isinstance(request.range, tuple):
        hist_range = request.range
    else:
        hist_range = (low, high + 1)
        if request.range == "round" and np.issubdtype(band.dtype, np.integer):
            span = hist_range[1] - hist_range[0]
            if span < bins * 10:
                step = math.ceil(span / bins)
                bins = math.ceil(span / step)
                hist_range = (hist_range[0], hist_range[0] + step * bins)
    hist, edges = band.histogram(bins, float(hist_range[0]), float(hist_range[1]))
    samples = float(hist.sum())
    counts = hist.astype(float) / samples if request.density and samples else hist
    return {
        "min": low,
        "max": high,
        "mean": band.mean,
        "stdev": band.stdev,
        "range": [float(hist_range[0]), float(hist_range[1])],
        "hist": [float(v) for v in counts],
        "bin_edges": [float(v) for v in edges],
        "bins": bins,
        "density": request.density,
        "samples": samples,
    }


def band_information(
    renderer: Renderer, request: BandsRequest, generation: int
) -> dict[str, dict[str, Any]]:
    source = renderer.open(request.source, generation)
    source.check_tile(source.levels - 1, 0, 0, request.frame)
    plan = plan_region(
        RegionAsk(
            RegionSpec(),
            min(source.size_x, BANDS_ANALYSIS_SIZE),
            min(source.size_y, BANDS_ANALYSIS_SIZE),
            grid=source.grid,
            max_pixels=max(renderer.settings.max_region_pixels, BANDS_ANALYSIS_SIZE**2),
            native=lambda z: source.is_native_level(z, request.frame),
        )
    )
    tiles = renderer.raw_tiles(source, request.source, generation)
    bands = summarize(read_plan(tiles, plan, request.frame))
    names = BAND_INTERPRETATIONS.get(len(bands), BAND_INTERPRETATIONS[3])
    return {
        str(index + 1): {
            "interpretation": names[index] if index < len(names) else "unknown",
            "min": band.min.item(),
            "max": band.max.item(),
            "mean": band.mean,
            "stdev": band.stdev,
        }
        for index, band in enumerate(bands)
    }
