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
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from common.encoding import EncodingOptions
from workers.sources.base import ImageSource
from workers.style import CompiledStyle

log = logging.getLogger(__name__)

UnstyledKey = tuple[str, int]
StyledKey = tuple[str, int, str, str]
# a compiled style and its palette arrays; lookup tables (up to ~1 MB for 16-bit data)
# are built as tiles use them, so count a typical share of them.
STYLED_ENTRY_BYTES = 256 * 1024


@dataclass
class StyledSource:
    source: ImageSource
    style: CompiledStyle | None
    encoding: EncodingOptions


@dataclass
class _Entry:
    value: ImageSource | StyledSource
    nbytes: int


@dataclass
class SourceCacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class SourceCache:
    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max(1, max_count)
        self.max_bytes = max(1, max_bytes)
        self.stats = SourceCacheStats()
        self._entries: OrderedDict[UnstyledKey | StyledKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def unstyled(
        self, source_id: str, generation: int, opener: Callable[[], ImageSource]
    ) -> ImageSource:
        """The opened source; ``opener`` runs (outside the lock) on a miss."""
        key: UnstyledKey = (source_id, generation)
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                assert isinstance(entry.value, ImageSource)
                return entry.value
        source = opener()
        with self._lock:
            entry = self._touch(key)
            if entry is not None:  # another thread opened it meanwhile
                source.close()
                assert isinstance(entry.value, ImageSource)
                return entry.value
            self._retire_generations(source_id, generation)
            self._add(key, _Entry(source, source.estimated_bytes))
            return source

    def styled(
        self,
        source_id: str,
        generation: int,
        style: str | None,
        encoding: EncodingOptions,
        opener: Callable[[], ImageSource],
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
                    return entry.value
                self._remove(key)  # built on a source that has since been reopened
        styled = StyledSource(source, compile_style(style), encoding)
        with self._lock:
            self._add(key, _Entry(styled, STYLED_ENTRY_BYTES))
        return styled

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._remove(key)

    # -- internals (lock held) ------------------------------------------------------------
    def _touch(self, key: UnstyledKey | StyledKey) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry

    def _add(self, key: UnstyledKey | StyledKey, entry: _Entry) -> None:
        if key in self._entries:
            self._remove(key)
        self._entries[key] = entry
        self._bytes += entry.nbytes
        # Evict least recently used entries, never the one just added nor the source
        # it is built on (both are about to be used).
        protected = {key, key[:2]}
        while len(self._entries) > self.max_count or self._bytes > self.max_bytes:
            victim = next((k for k in self._entries if k not in protected), None)
            if victim is None:
                break
            self._remove(victim)
            self.stats.evictions += 1

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
