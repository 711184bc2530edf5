"""A per-process memo of source generations: what keeps the hit path at one round trip.

A tile key holds its source's generation, so serving a hit needs the generation first.
Remembering it for ``ttl`` seconds means a hit costs one Redis GET; a bumped generation
is seen within ``ttl``. Unknown sources are never remembered, so a source registered a
moment ago is served at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tilecast.common.errors import UnknownSource
from tilecast.common.registry import SourceRegistry

# Far more sources than any process serves at once; past it the memo starts afresh
# rather than growing without bound.
MAX_ENTRIES = 100_000


class GenerationMemo:
    def __init__(
        self,
        registry: SourceRegistry,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self.clock = clock
        # Dict reads and writes are atomic under the GIL; a race only costs a lookup.
        self._entries: dict[str, tuple[int, float]] = {}

    def get(self, source_id: str) -> int:
        """The source's current generation; raises UnknownSource for unknown ids."""
        now = self.clock()
        entry = self._entries.get(source_id)
        if entry is not None and entry[1] > now:
            return entry[0]
        generation = self.registry.generation(source_id)
        if generation is None:
            raise UnknownSource.of(source_id)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[source_id] = (generation, now + self.ttl)
        return generation

    def forget(self, source_id: str) -> None:
        self._entries.pop(source_id, None)
