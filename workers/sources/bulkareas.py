"""Decoding once for many tiles: the tiles a bulk read announced and the areas decoded
for them.

Some formats decode an area of several tiles for little more than the price of one
tile: a JPEG 2000 codestream tile of 1024 x 1024 pixels decodes whole in about the time
four of its 256-pixel parts take one by one (each part pays for the codestream's
headers and the wavelet's margins again). A pre-rendering batch reads a block of
neighbouring tiles one after another, and announces them first
(``ImageSource.bulk_read``); a reader keeping a :class:`BulkAreas` then decodes, at the
first tile of each *window* (``window_tiles`` x ``window_tiles`` tiles of a level,
aligned on the level's tile grid), the announced tiles of that window in one area,
hands each tile its part of it, and drops the area once its last announced tile was
read, or the batch ends. A tile nobody announced (a viewer's miss) is decoded alone,
as before: one tile's latency stays one tile's decode.

Bounded: the areas held together are at most ``max_bytes`` (the oldest is dropped
first; its tiles are decoded again when read). Thread-safe: areas are decoded outside
the lock; two threads decoding the same window keep one of the two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

# (frame, z, window x, window y)
WindowKey = tuple[int, int, int, int]


@dataclass(frozen=True)
class Span:
    """A rectangle of tiles of one level (x1, y1 exclusive): what one area decode covers."""

    z: int
    frame: int
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class _Area:
    span: Span
    pixels: np.ndarray | None  # None: the area did not decode; its tiles decode alone
    waiting: set[tuple[int, int]] = field(default_factory=set)

    @property
    def nbytes(self) -> int:
        return 0 if self.pixels is None else int(self.pixels.nbytes)


class BulkAreas:
    """The announced tiles of a reader and the areas decoded for them."""

    def __init__(self, tile_width: int, tile_height: int, window_tiles: int, max_bytes: int):
        self.tile_width = tile_width
        self.tile_height = tile_height
        self.window_tiles = max(1, window_tiles)
        self.max_bytes = max_bytes
        self._announced: dict[WindowKey, dict[tuple[int, int], int]] = {}
        self._areas: OrderedDict[WindowKey, _Area] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def _window(self, z: int, x: int, y: int, frame: int) -> WindowKey:
        return frame, z, x // self.window_tiles, y // self.window_tiles

    @property
    def nbytes(self) -> int:
        return self._bytes

    # -- announcing -------------------------------------------------------------------
    @contextmanager
    def announced(
        self, z: int, coords: Sequence[tuple[int, int]], frame: int = 0
    ) -> Iterator[None]:
        """Tiles ``coords`` of level ``z`` are read one after another until the block
        ends; an area of several of them is decoded once for all of them."""
        with self._lock:
            for x, y in coords:
                waiting = self._announced.setdefault(self._window(z, x, y, frame), {})
                waiting[(x, y)] = waiting.get((x, y), 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for x, y in coords:
                    self._unannounce(self._window(z, x, y, frame), (x, y))

    def _unannounce(self, key: WindowKey, tile: tuple[int, int]) -> None:
        waiting = self._announced.get(key)
        if waiting is None or tile not in waiting:
            return
        waiting[tile] -= 1
        if waiting[tile] <= 0:
            del waiting[tile]
        if not waiting:
            del self._announced[key]
            self._drop(key)

    # -- reading ----------------------------------------------------------------------
    def cut(self, z: int, x: int, y: int, frame: int = 0) -> np.ndarray | None:
        """Tile (x, y)'s part of an area decoded for it (its content, without padding),
        or None: not announced, or its area not decoded (yet, or it failed)."""
        key = self._window(z, x, y, frame)
        with self._lock:
            area = self._areas.get(key)
            if area is None or area.pixels is None or (x, y) not in area.waiting:
                return None
            span = area.span
            if not (span.x0 <= x < span.x1 and span.y0 <= y < span.y1):
                return None
            area.waiting.discard((x, y))
            left, top = (x - span.x0) * self.tile_width, (y - span.y0) * self.tile_height
            part = area.pixels[top : top + self.tile_height, left : left + self.tile_width]
            if not area.waiting:
                self._drop(key)
        return np.ascontiguousarray(part)

    def span(self, z: int, x: int, y: int, frame: int = 0) -> Span | None:
        """The tiles to decode in one area for tile (x, y): the announced tiles of its
        window (their bounding rectangle), or None when the tile was not announced, is
        alone in its window, or its window's area failed to decode."""
        key = self._window(z, x, y, frame)
        with self._lock:
            waiting = self._announced.get(key)
            if not waiting or (x, y) not in waiting or len(waiting) < 2:
                return None
            area = self._areas.get(key)
            if area is not None and area.pixels is None:
                return None
            xs = [tx for tx, _ty in waiting]
            ys = [ty for _tx, ty in waiting]
        return Span(z, frame, min(xs), min(ys), max(xs) + 1, max(ys) + 1)

    def keep(self, span: Span, pixels: np.ndarray | None) -> None:
        """The decoded area of ``span`` (None: it did not decode, so its tiles are decoded
        alone), for the announced tiles inside it."""
        key = self._window(span.z, span.x0, span.y0, span.frame)
        with self._lock:
            waiting = self._announced.get(key, {})
            inside = {
                (x, y) for x, y in waiting if span.x0 <= x < span.x1 and span.y0 <= y < span.y1
            }
            if not inside:
                return
            self._drop(key)
            area = _Area(span, pixels, inside)
            self._areas[key] = area
            self._bytes += area.nbytes
            while self._bytes > self.max_bytes and len(self._areas) > 1:
                self._drop(next(iter(self._areas)))

    def _drop(self, key: WindowKey) -> None:
        area = self._areas.pop(key, None)
        if area is not None:
            self._bytes -= area.nbytes

    def clear(self) -> None:
        with self._lock:
            self._areas.clear()
            self._announced.clear()
            self._bytes = 0
