"""Whole-image band statistics for styles, computed once and shared through Redis.

large_image's ``_scanForMinMax`` takes the statistics that ``auto`` / ``min`` /
``max`` (and the ``min:T`` histogram thresholds) need from a low-resolution
overview: ``histogram(output={'maxWidth': min(sizeX, 1024), 'maxHeight': min(sizeY,
1024)}, resample=False, frame=frame)``, i.e. every pixel of the coarsest level that
is at least that size. Here the same level is assembled from raw tiles (through the
raw-tile cache, so a level that was rendered is not read again), reduced to per-band
numbers, and stored under ``common.bandstats.band_stats_key`` in the cache Redis, so
every worker process (on every host) shares one computation per (source,
generation, frame). A small per-process memo in front of Redis saves the GET on
consecutive tiles. Two kinds: ``minmax`` (what ``auto`` / ``min`` / ``max`` need)
and ``histogram`` (adds large_image's 256-bin histogram per band, range
``[min, max + 1]``, for thresholds); the second is computed only when a style asks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilecast.common.bandstats import ANALYSIS_SIZE, HISTOGRAM, MINMAX, band_stats_key
from tilecast.common.cache import TileCache
from tilecast.workers.synthesis import RawTiles
from tilecast.workers.thumbnail import assemble_level, level_for_output, output_size

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 256  # large_image's histogram default
MEMO_ENTRIES = 256


@dataclass(frozen=True)
class BandHistogram:
    """One band's record of large_image's ``histogram()['histogram']``."""

    min: float
    max: float
    hist: np.ndarray
    bin_edges: np.ndarray
    samples: int


@dataclass(frozen=True)
class BandStats:
    """Per-band minimum and maximum (and histograms when asked) of one frame."""

    min: np.ndarray
    max: np.ndarray
    histograms: tuple[BandHistogram, ...] | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"min": self.min.tolist(), "max": self.max.tolist()}
        if self.histograms is not None:
            data["histograms"] = [
                {
                    "min": h.min,
                    "max": h.max,
                    "hist": h.hist.tolist(),
                    "bin_edges": h.bin_edges.tolist(),
                    "samples": h.samples,
                }
                for h in self.histograms
            ]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> BandStats:
        data = json.loads(text)
        histograms = None
        if "histograms" in data:
            histograms = tuple(
                BandHistogram(
                    float(h["min"]),
                    float(h["max"]),
                    np.array(h["hist"], dtype=np.int64),
                    np.array(h["bin_edges"], dtype=np.float64),
                    int(h["samples"]),
                )
                for h in data["histograms"]
            )
        return cls(np.array(data["min"]), np.array(data["max"]), histograms)


def compute_stats(pixels: np.ndarray, histogram: bool = False) -> BandStats:
    """The statistics of (height, width, bands) pixels, as large_image's ``histogram``
    reports them (its per-tile sums equal one pass over the whole level: the bin
    edges depend only on the range)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    flat = pixels.reshape(-1, pixels.shape[2])
    low, high = flat.min(axis=0), flat.max(axis=0)
    histograms = None
    if histogram:
        records = []
        for band in range(flat.shape[1]):
            lo, hi = float(low[band]), float(high[band])
            hist, edges = np.histogram(flat[:, band], HISTOGRAM_BINS, (lo, hi + 1))
            records.append(BandHistogram(lo, hi, hist, edges, int(hist.sum())))
        histograms = tuple(records)
    return BandStats(low, high, histograms)


def overview_level(tiles: RawTiles) -> int:
    """The level large_image's ``_scanForMinMax`` reads: the coarsest at least the size
    of the image fitted into ANALYSIS_SIZE x ANALYSIS_SIZE."""
    source = tiles.source
    out_w, out_h = output_size(
        min(source.size_x, ANALYSIS_SIZE),
        min(source.size_y, ANALYSIS_SIZE),
        source.size_x,
        source.size_y,
    )
    return level_for_output(source.grid, out_w, out_h)


def overview_stats(tiles: RawTiles, frame: int, histogram: bool = False) -> BandStats:
    return compute_stats(assemble_level(tiles, overview_level(tiles), frame), histogram)


class BandStatsCache:
    """Band statistics of (source, generation, frame): memo, else Redis, else computed
    (and written to Redis for every other process)."""

    def __init__(self, cache: TileCache, memo_entries: int = MEMO_ENTRIES) -> None:
        self.cache = cache
        self.memo_entries = memo_entries
        self._memo: OrderedDict[str, BandStats] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many this process computed (tests and logs)

    def get(self, tiles: RawTiles, frame: int, histogram: bool = False) -> BandStats:
        kind = HISTOGRAM if histogram else MINMAX
        key = band_stats_key(tiles.source_id, tiles.generation, frame, kind)
        with self._lock:
            stats = self._memo.get(key)
            if stats is not None:
                self._memo.move_to_end(key)
                return stats
        stats = self._load(key)
        if stats is None:
            stats = overview_stats(tiles, frame, histogram)
            self.computed += 1
            log.info(
                "band statistics of %s frame %d: min %s max %s",
                tiles.source_id,
                frame,
                stats.min.tolist(),
                stats.max.tolist(),
            )
            self.cache.put(key, stats.to_json().encode())
        with self._lock:
            self._memo[key] = stats
            while len(self._memo) > self.memo_entries:
                self._memo.popitem(last=False)
        return stats

    def _load(self, key: str) -> BandStats | None:
        data = self.cache.get(key)
        if data is None:
            return None
        try:
            return BandStats.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("discarding unreadable band statistics %s: %s", key, exc)
            return None
