"""Blocks of remote files that worker processes and hosts share in the cache Redis.

A file's directories, read once by whoever opened it first, cost the other processes one
Redis round trip instead of a chain of requests to the remote store. Keys name the
file's content version (a Girder file's version, an object's ETag or version id) and the
block size (hosts may differ in it), so a replaced file is never read through blocks of
its older content.

Entries carry a TTL, as tiles do, so that a Redis shared with state can evict them. The
tier is an optimisation only: when Redis fails, callers go to the remote store, and the
tier rests for a while so that a hung Redis does not slow every read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

from tilecast.common.cache import TileCache
from tilecast.common.redisconn import connect_cache

log = logging.getLogger(__name__)

# Seconds the tier is skipped after a Redis failure.
REST_AFTER_FAILURE = 30.0
# A hung Redis must cost a read little: the tier's own client gives up early.
TIMEOUT = 1.0

# block_key(file key, block size, block index) -> the Redis key of a block.
BlockKey = Callable[[str, int, int], str]


@dataclass
class SharedStats:
    hits: int = 0
    misses: int = 0
    failures: int = 0


class SharedBlocks:
    def __init__(self, url: str, block_ttl: int, block_size: int, block_key: BlockKey) -> None:
        client = connect_cache(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        self._client = client
        self._blocks = TileCache(client, ttl=block_ttl) if block_ttl > 0 else None
        self._block_key = block_key
        self.block_size = block_size
        self.stats = SharedStats()
        self._resting_until = 0.0
        self._lock = threading.Lock()

    def blocks(self, file_key: str, indices: Sequence[int]) -> list[bytes | None]:
        """The blocks Redis holds (None for the others), in one round trip."""
        keys = [self._block_key(file_key, self.block_size, i) for i in indices]
        return self._get(self._blocks, keys)

    def put_blocks(self, file_key: str, blocks: Mapping[int, bytes]) -> None:
        items = {self._block_key(file_key, self.block_size, i): data for i, data in blocks.items()}
        self._put(self._blocks, items)

    def values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Entries under Redis keys of the caller's own naming (a prefix's documents),
        in one round trip; None for those Redis lacks."""
        return self._get(self._blocks, list(keys))

    def put_values(self, items: Mapping[str, bytes]) -> None:
        self._put(self._blocks, items)

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------------
    def _get(self, cache: TileCache | None, keys: list[str]) -> list[bytes | None]:
        if cache is None or not keys or self._resting():
            return [None] * len(keys)
        try:
            found = cache.get_many(keys)
        except redis.RedisError as exc:
            self._failed(exc)
            return [None] * len(keys)
        with self._lock:
            hits = sum(1 for data in found if data is not None)
            self.stats.hits += hits
            self.stats.misses += len(found) - hits
        return found

    def _put(self, cache: TileCache | None, items: Mapping[str, bytes]) -> None:
        if cache is None or not items or self._resting():
            return
        try:
            cache.put_many(items)
        except redis.RedisError as exc:
            self._failed(exc)

    def _resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def _failed(self, exc: redis.RedisError) -> None:
        with self._lock:
            self.stats.failures += 1
            first = not self._resting()
            self._resting_until = time.monotonic() + REST_AFTER_FAILURE
        if first:
            log.warning("the cache Redis failed; reading the remote store instead: %s", exc)
