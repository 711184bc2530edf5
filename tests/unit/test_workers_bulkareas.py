"""The areas a reader decodes once for the tiles a bulk read announced
(workers/sources/bulkareas.py): which tiles share an area, what each gets, the bound."""

from __future__ import annotations

import numpy as np

from tilecast.workers.sources.bulkareas import BulkAreas, Span

TILE = 4


def area(span: Span, bands: int = 1) -> np.ndarray:
    """Pixels of ``span`` whose values name their tile: 10 * x + y."""
    height, width = (span.y1 - span.y0) * TILE, (span.x1 - span.x0) * TILE
    pixels = np.zeros((height, width, bands), dtype=np.uint16)
    for y in range(span.y0, span.y1):
        for x in range(span.x0, span.x1):
            top, left = (y - span.y0) * TILE, (x - span.x0) * TILE
            pixels[top : top + TILE, left : left + TILE] = 10 * x + y
    return pixels


def test_tiles_nobody_announced_are_decoded_alone() -> None:
    areas = BulkAreas(TILE, TILE, 4, 1 << 20)
    assert areas.cut(3, 0, 0) is None
    assert areas.span(3, 0, 0) is None
    with areas.announced(3, [(0, 0)]):
        assert areas.span(3, 0, 0) is None  # alone in its window: nothing to share


def test_the_announced_tiles_of_a_window_share_one_area_until_the_last_is_read() -> None:
    areas = BulkAreas(TILE, TILE, 4, 1 << 20)
    coords = [(x, y) for y in range(2, 6) for x in range(3, 9)]  # across three windows
    with areas.announced(5, coords):
        span = areas.span(5, 3, 2)
        assert span == Span(5, 0, 3, 2, 4, 4)  # window (0, 0): x 0-3, y 0-3
        areas.keep(span, area(span))
        assert areas.span(5, 4, 2) == Span(5, 0, 4, 2, 8, 4)
        assert areas.cut(5, 4, 2) is None  # its window's area is not decoded yet
        part = areas.cut(5, 3, 3)
        assert part is not None and part.shape == (TILE, TILE, 1) and (part == 33).all()
        assert areas.nbytes > 0
        assert areas.cut(5, 3, 3) is None  # handed out once
        last = areas.cut(5, 3, 2)
        assert last is not None and (last == 32).all()
        assert areas.nbytes == 0  # its last tile was read: the area is gone


def test_an_area_is_dropped_when_its_block_ends() -> None:
    areas = BulkAreas(TILE, TILE, 4, 1 << 20)
    with areas.announced(2, [(0, 0), (1, 0)]):
        span = areas.span(2, 0, 0)
        assert span is not None
        areas.keep(span, area(span))
        assert areas.cut(2, 0, 0) is not None
    assert areas.nbytes == 0
    assert areas.cut(2, 1, 0) is None


def test_areas_are_bounded_the_oldest_dropped_first() -> None:
    one = area(Span(1, 0, 0, 0, 2, 1), bands=3)
    areas = BulkAreas(TILE, TILE, 2, one.nbytes + 1)
    with areas.announced(1, [(0, 0), (1, 0), (2, 0), (3, 0)]):
        first, second = areas.span(1, 0, 0), areas.span(1, 2, 0)
        assert first is not None and second is not None
        areas.keep(first, area(first, bands=3))
        areas.keep(second, area(second, bands=3))
        assert areas.nbytes == one.nbytes
        assert areas.cut(1, 0, 0) is None  # dropped: decoded again when read
        assert areas.cut(1, 2, 0) is not None


def test_an_area_that_did_not_decode_leaves_its_tiles_to_decode_alone() -> None:
    areas = BulkAreas(TILE, TILE, 4, 1 << 20)
    with areas.announced(0, [(0, 0), (1, 1)]):
        span = areas.span(0, 0, 0)
        assert span is not None
        areas.keep(span, None)
        assert areas.cut(0, 0, 0) is None
        assert areas.span(0, 1, 1) is None  # not tried again for each of its tiles
