"""The per-process source cache: LRU by count and bytes, closing, styled entries."""

from __future__ import annotations

import numpy as np

from tilecast.common.encoding import EncodingOptions
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sourcecache import OpenedSource, SourceCache
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.style import compile_style

JPEG = EncodingOptions()
PNG = EncodingOptions(format="PNG")
STYLE = '{"max":200,"min":0}'


class FakeSource(ImageSource):
    def __init__(self, name: str, nbytes: int = 100) -> None:
        self.path = name
        self.size_x = self.size_y = 10
        self.tile_width = self.tile_height = 256
        self.levels = 1
        self.dtype = np.dtype("uint8")
        self.band_count = 3
        self.nbytes = nbytes
        self.closed = 0

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        return (10, 10) if z == 0 else None

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        return RawTile.from_pixels(self.empty_tile())

    @property
    def estimated_bytes(self) -> int:
        return self.nbytes

    def close(self) -> None:
        self.closed += 1


class Opener:
    def __init__(self, nbytes: int = 100) -> None:
        self.opened: list[FakeSource] = []
        self.nbytes = nbytes

    def __call__(self) -> FakeSource:
        self.opened.append(FakeSource(f"s{len(self.opened)}", self.nbytes))
        return self.opened[-1]


def test_hits_do_not_reopen() -> None:
    cache, opener = SourceCache(4, 1_000_000), Opener()
    first = cache.unstyled("a", 1, opener)
    assert cache.unstyled("a", 1, opener) is first
    assert len(opener.opened) == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)  # one miss: the file opened once


def test_count_bound_evicts_least_recently_used_and_closes_it() -> None:
    cache, opener = SourceCache(2, 1_000_000), Opener()
    a = cache.unstyled("a", 1, opener)
    b = cache.unstyled("b", 1, opener)
    cache.unstyled("a", 1, opener)  # a is now the most recent
    cache.unstyled("c", 1, opener)
    assert b.closed == 1 and a.closed == 0
    # b was used a moment ago, within the activity window: a forced eviction.
    assert len(cache) == 2 and cache.stats.evictions_active == 1
    assert cache.stats.evictions == 0


def test_byte_bound() -> None:
    cache, opener = SourceCache(100, 250), Opener(nbytes=100)
    sources = [cache.unstyled(name, 1, opener) for name in "abc"]
    assert [s.closed for s in sources] == [1, 0, 0]
    assert cache.nbytes == 200
    # One source larger than the bound is still kept while it is in use.
    big = SourceCache(100, 50).unstyled("x", 1, Opener(nbytes=1000))
    assert big.closed == 0


def test_styled_entries_share_the_unstyled_source() -> None:
    cache, opener = SourceCache(10, 1_000_000), Opener()
    plain = cache.styled("a", 1, None, JPEG, opener, compile_style)
    styled = cache.styled("a", 1, STYLE, JPEG, opener, compile_style)
    as_png = cache.styled("a", 1, STYLE, PNG, opener, compile_style)
    assert plain.source is styled.source is as_png.source
    assert plain.style is None and styled.style is not None
    assert styled is not as_png
    assert cache.styled("a", 1, STYLE, JPEG, opener, compile_style) is styled
    assert len(opener.opened) == 1 and len(cache) == 4


def test_evicting_a_source_drops_its_styled_entries() -> None:
    cache, opener = SourceCache(3, 1_000_000), Opener()
    styled = cache.styled("a", 1, STYLE, JPEG, opener, compile_style)
    cache.unstyled("b", 1, opener)
    cache.unstyled("c", 1, opener)  # over the count: "a" goes, with its styled entry
    assert styled.source.closed == 1
    again = cache.styled("a", 1, STYLE, JPEG, opener, compile_style)
    assert again is not styled and again.source.closed == 0


def test_a_tight_bound_never_closes_the_source_being_used() -> None:
    cache, opener = SourceCache(1, 1_000_000), Opener()
    styled = cache.styled("a", 1, STYLE, JPEG, opener, compile_style)
    assert styled.source.closed == 0


def test_a_newer_generation_retires_older_ones() -> None:
    cache, opener = SourceCache(10, 1_000_000), Opener()
    old = cache.unstyled("a", 1, opener)
    new = cache.unstyled("a", 2, opener)
    assert old.closed == 1 and new.closed == 0
    late = cache.unstyled("a", 1, opener)  # a late task of the old generation
    assert new.closed == 0 and late is not new


def test_clear_closes_everything() -> None:
    cache, opener = SourceCache(10, 1_000_000), Opener()
    sources = [cache.unstyled(name, 1, opener) for name in "ab"]
    cache.clear()
    assert [s.closed for s in sources] == [1, 1] and len(cache) == 0 and cache.nbytes == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_sources_idle_beyond_it_go_first_and_are_counted_apart() -> None:
    clock = Clock()
    cache, opener = SourceCache(3, 1_000_000, window=600.0, clock=clock), Opener()
    old = cache.unstyled("old", 1, opener)
    clock.now += 700  # "old" is now idle beyond the window
    a = cache.unstyled("a", 1, opener)
    b = cache.unstyled("b", 1, opener)
    cache.unstyled("c", 1, opener)  # the bound forces one out: the idle one
    assert old.closed == 1 and a.closed == 0 and b.closed == 0
    assert (cache.stats.evictions, cache.stats.evictions_active) == (1, 0)
    assert cache.active_count() == 3
    cache.unstyled("d", 1, opener)  # every entry is within the window: forced
    assert a.closed == 1
    assert (cache.stats.evictions, cache.stats.evictions_active) == (1, 1)


def test_a_source_in_use_stays_within_the_window_as_others_come_and_go() -> None:
    clock = Clock()
    cache, opener = SourceCache(2, 1_000_000, window=600.0, clock=clock), Opener()
    viewed = cache.unstyled("viewed", 1, opener)
    for i in range(5):
        clock.now += 300
        cache.unstyled("viewed", 1, opener)  # someone keeps viewing it
        cache.unstyled(f"once{i}", 1, opener)
    assert viewed.closed == 0
    assert cache.stats.hits == 5 and cache.stats.misses == 6


def test_take_stats_returns_deltas_and_gauges_are_published_on_change() -> None:
    clock = Clock()
    cache, opener = SourceCache(4, 1_000_000, clock=clock), Opener(nbytes=100)
    cache.unstyled("a", 1, opener)
    cache.unstyled("a", 1, opener)
    cache.styled("a", 1, STYLE, PNG, opener, compile_style)
    cache.styled("a", 1, STYLE, PNG, opener, compile_style)
    first = cache.take_stats()
    assert (first.hits, first.misses, first.styled_hits, first.styled_misses) == (3, 1, 1, 1)
    assert cache.take_stats().hits == 0
    cache.unstyled("a", 1, opener)
    assert cache.take_stats().hits == 1
    assert cache.gauges_due() == {"open": 1, "entries": 2, "bytes": 100 + 256 * 1024}
    assert cache.gauges_due() is None  # unchanged
    clock.now += 31
    assert cache.gauges_due() is not None  # refreshed so readers know it is alive
    cache.unstyled("b", 1, opener)
    assert cache.gauges_due() == {"open": 2, "entries": 3, "bytes": 200 + 256 * 1024}


def test_an_open_file_is_checked_at_most_once_per_interval() -> None:
    now = [0.0]
    cache = SourceCache(4, 1_000_000, check_interval=2.0, clock=lambda: now[0])
    checks: list[float] = []
    current = [True]
    opened: list[FakeSource] = []

    def opener() -> OpenedSource:
        opened.append(FakeSource(f"s{len(opened)}"))

        def still_current() -> bool:
            checks.append(now[0])
            return current[0]

        return OpenedSource(opened[-1], still_current)

    first = cache.unstyled("a", 1, opener)
    for step in range(10):  # 10 uses within 1 s: no stat at all
        now[0] = step * 0.1
        assert cache.unstyled("a", 1, opener) is first
    assert checks == []
    now[0] = 2.5
    assert cache.unstyled("a", 1, opener) is first
    assert cache.unstyled("a", 1, opener) is first
    assert checks == [2.5]  # one check for both uses
    current[0] = False  # the file changed
    now[0] = 5.0
    second = cache.unstyled("a", 1, opener)
    assert second is not first and first.closed == 1  # dropped and opened again
    assert checks == [2.5, 5.0]
