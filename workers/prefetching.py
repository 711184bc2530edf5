"""The worker's side of prefetch (api/miss/prefetch.py): render a prefetch's tiles only
while they are worth it.

Just before each tile: past the task's expiry (the viewer has moved on), or cached by
someone else meanwhile, or claimed by a viewer's miss (an in-flight marker: that
viewer's own interactive render is on its way), the tile is dropped. Prefetch never
claims a marker itself, so a viewer never waits on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from tilecast.common.inflight import inflight_key
from tilecast.common.redisconn import CacheClient


@dataclass
class PrefetchGuard:
    """``wanted(key)`` for workers/batch.py; counts what it dropped."""

    cache: CacheClient
    state: redis.Redis
    expires: float
    clock: Callable[[], float] = time.time
    dropped: int = 0

    def wanted(self, key: str) -> bool:
        if self.clock() >= self.expires or self._taken(key):
            self.dropped += 1
            return False
        return True

    def _taken(self, key: str) -> bool:
        """Cached, or in flight (someone waits for it)."""
        if self.cache.exists(key):
            return True
        return bool(self.state.exists(inflight_key(key)))
