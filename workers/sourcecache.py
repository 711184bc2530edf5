"""The per-process LRU of opened sources (DESIGN.md, request path step 4).

Two kinds of entry share one LRU and its bounds (``Settings.source_cache_count``
entries and ``Settings.source_cache_bytes`` estimated bytes):

- unstyled: ``(source, generation)`` -> the opened :class:`ImageSource`;
- styled: ``(source, generation, style, encoding)`` -> a :class:`StyledSource`: the
  unstyled source altered for a style (the compiled pixel operation, with the lookup
  tables it builds as tiles use it, and the encoding). The whole-frame band
  statistics a style needs are not kept here but in the cache Redis
  (workers/bandstats.py), shared by every process and every style of the source.

Evicting an unstyled source closes it and drops the styled entries built on it; a
newer generation of a source retires the older ones as soon as it is opened.

Activity window (``Settings.active_window``): every source used within the window is
kept while the bounds allow. Eviction takes the least recently used entry, so entries
idle beyond the window always go before any used within it; an eviction of an entry
used within the window means the bounds are too small for the active set, and is
counted apart (``evictions_active``) so that shows in ``/metrics``. Hits and misses
count the unstyled lookups (a miss opens the file); styled lookups are counted apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tilecast.common import counters
from tilecast.common.encoding import EncodingOptions
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.style import CompiledStyle

log = logging.getLogger(__name__)

UnstyledKey = tuple[str, int]
StyledKey = tuple[str, int, str, str]
# a compiled style and its palette arrays; lookup tables (up to ~1 MB for 16-bit data)
# are built as tiles use them, so count a typical share of them.
STYLED_ENTRY_BYTES = 256 * 1024
# Gauges are republished at least this often (well under common.counters'
# GAUGE_STALE_SECONDS, after which readers drop a process as gone).
GAUGE_REFRESH = 30.0


@dataclass
class StyledSource:
    source: ImageSource
    style: CompiledStyle | None
    encoding: EncodingOptions


@dataclass
class OpenedSource:
    """What an opener may answer: the source and a check that its file is still the
    one opened (one ``stat``: workers/filechanges.py), made at most once per the
    cache's ``check_interval`` while the source is cached."""

    source: ImageSource
    still_current: Callable[[], bool] | None = None


@dataclass
class _Entry:
    value: ImageSource | StyledSource
    nbytes: int
    used: float = 0.0  # clock time of the last lookup that found or added it
    still_current: Callable[[], bool] | None = None
    checked: float = 0.0  # clock time of the last check (or of the opening)


@dataclass
class SourceCacheStats:
    hits: int = 0  # unstyled lookups that found the source open
    misses: int = 0  # unstyled lookups that opened the file
    evictions: int = 0  # entries idle beyond the window
    evictions_active: int = 0  # entries used within the window (forced by the bounds)
    styled_hits: int = 0
    styled_misses: int = 0

    def minus(self, other: SourceCacheStats) -> SourceCacheStats:
        return SourceCacheStats(
            **{name: getattr(self, name) - getattr(other, name) for name in _STAT_NAMES}
        )


_STAT_NAMES = tuple(SourceCacheStats.__dataclass_fields__)


class SourceCache:
    def __init__(
        self,
        max_count: int,
        max_bytes: int,
        *,
        window: float = 600.0,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_count = max(1, max_count)
        self.check_interval = check_interval
        self.max_bytes = max(1, max_bytes)
        self.window = window
        self.clock = clock
        self.stats = SourceCacheStats()
        self._reported = SourceCacheStats()
        self._published: dict[str, int] = {}
        self._published_at = float("-inf")
        self._entries: OrderedDict[UnstyledKey | StyledKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def unstyled(
        self,
        source_id: str,
        generation: int,
        opener: Callable[[], ImageSource | OpenedSource],
    ) -> ImageSource:
        """The opened source; ``opener`` runs (outside the lock) on a miss, and again
        when the file of a cached source is found changed (the entry is dropped)."""
        key: UnstyledKey = (source_id, generation)
        with self._lock:
            entry = self._touch(key)
            check = entry is not None and self._check_due(entry)
            if entry is not None and not check:
                self.stats.hits += 1
                assert isinstance(entry.value, ImageSource)
                return entry.value
        if entry is not None and entry.still_current is not None:
            current = entry.still_current()  # outside the lock: a stat may be slow
            with self._lock:
                if current:
                    self.stats.hits += 1
                    assert isinstance(entry.value, ImageSource)
                    return entry.value
                if self._entries.get(key) is entry:
                    log.info("the file of source %s changed while open", source_id)
                    self._remove(key)
        with self._lock:
            self.stats.misses += 1
        opened = opener()
        if isinstance(opened, ImageSource):
            opened = OpenedSource(opened)
        source = opened.source
        with self._lock:
            entry = self._touch(key)
            if entry is not None:  # another thread opened it meanwhile
                source.close()
                assert isinstance(entry.value, ImageSource)
                return entry.value
            self._retire_generations(source_id, generation)
            self._add(
                key,
                _Entry(
                    source,
                    source.estimated_bytes,
                    still_current=opened.still_current,
                    checked=self.clock(),
                ),
            )
            return source

    def styled(
        self,
        source_id: str,
        generation: int,
        style: str | None,
        encoding: EncodingOptions,
        opener: Callable[[], ImageSource | OpenedSource],
        compile_style: Callable[[str | None], CompiledStyle | None],
    ) -> StyledSource:
        """The source altered for ``style`` and ``encoding``: from the cache, else built
        from the (cached or newly opened) unstyled source."""
        source = self.unstyled(source_id, generation, opener)
        key: StyledKey = (source_id, generation, style or "", encoding.key_part)
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                assert isinstance(entry.value, StyledSource)
                if entry.value.source is source:
                    self.stats.styled_hits += 1
                    return entry.value
                self._remove(key)  # built on a source that has since been reopened
            self.stats.styled_misses += 1
        styled = StyledSource(source, compile_style(style), encoding)
        with self._lock:
            self._add(key, _Entry(styled, STYLED_ENTRY_BYTES))
        return styled

    def take_stats(self) -> SourceCacheStats:
        """The counts added since the previous call (what a worker flushes to Redis)."""
        with self._lock:
            current = SourceCacheStats(**{n: getattr(self.stats, n) for n in _STAT_NAMES})
            delta = current.minus(self._reported)
            self._reported = current
            return delta

    def active_count(self) -> int:
        """Unstyled sources used within the window."""
        now = self.clock()
        with self._lock:
            return sum(
                1 for k, e in self._entries.items() if len(k) == 2 and now - e.used <= self.window
            )

    def gauges(self) -> dict[str, int]:
        """Current size: unstyled sources open, all entries, estimated bytes."""
        with self._lock:
            sources = sum(1 for key in self._entries if len(key) == 2)
            return {"open": sources, "entries": len(self._entries), "bytes": self._bytes}

    def gauges_due(self) -> dict[str, int] | None:
        """``gauges()`` when they changed since the last call or GAUGE_REFRESH passed."""
        values = self.gauges()
        now = self.clock()
        if values == self._published and now - self._published_at < GAUGE_REFRESH:
            return None
        self._published, self._published_at = values, now
        return values

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._remove(key)

    # -- internals (lock held) ------------------------------------------------------------
    def _check_due(self, entry: _Entry) -> bool:
        """Whether to check the entry's file now; claims the check (one thread does it)."""
        if entry.still_current is None:
            return False
        now = self.clock()
        if now - entry.checked < self.check_interval:
            return False
        entry.checked = now
        return True

    def _touch(self, key: UnstyledKey | StyledKey) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        entry.used = self.clock()
        return entry

    def _add(self, key: UnstyledKey | StyledKey, entry: _Entry) -> None:
        if key in self._entries:
            self._remove(key)
        now = self.clock()
        entry.used = now
        self._entries[key] = entry
        self._bytes += entry.nbytes
        # Evict least recently used entries, never the one just added nor the source
        # it is built on (both are about to be used). LRU order puts every entry idle
        # beyond the window before any used within it.
        protected = {key, key[:2]}
        while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
            victim = next((k for k in self._entries if k not in protected), None)
            if victim is None:
                break
            if now - self._entries[victim].used > self.window:
                self.stats.evictions += 1
            else:
                self.stats.evictions_active += 1
            self._remove(victim)

    def _remove(self, key: UnstyledKey | StyledKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.nbytes
        if isinstance(entry.value, ImageSource):
            source_id, generation = key[0], key[1]
            for other in [k for k in self._entries if len(k) == 4 and k[:2] == key[:2]]:
                self._remove(other)
            try:
                entry.value.close()
            except Exception:  # a failing close must not break the render that evicts
                log.exception("closing source %s generation %s failed", source_id, generation)

    def _retire_generations(self, source_id: str, generation: int) -> None:
        """Close older generations of a source: their tiles will not be asked again."""
        stale = [
            k for k in self._entries if len(k) == 2 and k[0] == source_id and k[1] < generation
        ]
        for key in stale:
            self._remove(key)


def source_cache_counts(cache: SourceCache) -> dict[str, int]:
    """The counts since the last call, named as in common.counters (for HINCRBY)."""
    delta = cache.take_stats()
    return {
        counters.SOURCE_CACHE_HITS: delta.hits,
        counters.SOURCE_CACHE_MISSES: delta.misses,
        counters.SOURCE_CACHE_EVICTIONS: delta.evictions,
        counters.SOURCE_CACHE_EVICTIONS_ACTIVE: delta.evictions_active,
    }


def source_cache_gauges(cache: SourceCache) -> dict[str, int] | None:
    """The cache's size to publish, when it changed or was last published long enough
    ago that readers would take this process for gone; else None."""
    return cache.gauges_due()
