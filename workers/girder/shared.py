"""What worker processes and hosts share about Girder files in the cache Redis.

- Range-read blocks: a file's directories, read once by whoever opened it first, cost
  the other processes one Redis round trip instead of a chain of requests to Girder.
  Keys name the file's content version and the block size (hosts may differ in it), so
  a replaced file is never read through blocks of its older content.
- Which file a registration of an item reads (its :class:`GirderFileInfo`), keyed by
  the source generation the describe task created: the first render of every process
  skips Girder's item and file look-ups. A replaced file is described again under a new
  generation, so a render never finds the older file under its own generation.

Entries carry a TTL, as tiles do, so that a Redis shared with state can evict them. The
tier is an optimisation only: when Redis fails, callers go to Girder, and the tier
rests for a while so that a hung Redis does not slow every read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import redis

from tilecast.common.cache import TileCache
from tilecast.common.keys import girder_block_key as block_key
from tilecast.common.keys import girder_file_key as file_info_key
from tilecast.common.redisconn import connect_cache
from tilecast.workers.girder.items import GirderFileInfo

log = logging.getLogger(__name__)

# Seconds the tier is skipped after a Redis failure.
REST_AFTER_FAILURE = 30.0
# A hung Redis must cost a read little: the tier's own client gives up early.
TIMEOUT = 1.0


@dataclass
class SharedStats:
    hits: int = 0
    misses: int = 0
    failures: int = 0


class SharedTier:
    def __init__(self, url: str, block_ttl: int, file_ttl: int, block_size: int) -> None:
        client = connect_cache(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        self._blocks = TileCache(client, ttl=block_ttl) if block_ttl > 0 else None
        self._files = TileCache(client, ttl=file_ttl) if file_ttl > 0 else None
        self._client = client
        self.block_size = block_size
        self.stats = SharedStats()
        self._resting_until = 0.0
        self._lock = threading.Lock()

    # -- blocks -------------------------------------------------------------------------------
    def blocks(self, file_key: str, indices: Sequence[int]) -> list[bytes | None]:
        """The blocks Redis holds (None for the others), in one round trip."""
        keys = [block_key(file_key, self.block_size, i) for i in indices]
        return self._get(self._blocks, keys)

    def put_blocks(self, file_key: str, blocks: Mapping[int, bytes]) -> None:
        items = {block_key(file_key, self.block_size, i): data for i, data in blocks.items()}
        self._put(self._blocks, items)

    # -- which file a registration reads ------------------------------------------------------
    def file_info(self, item_id: str, generation: int) -> GirderFileInfo | None:
        (data,) = self._get(self._files, [file_info_key(item_id, generation)])
        try:
            return None if data is None else GirderFileInfo(**json.loads(data))
        except (ValueError, TypeError):
            return None  # written by another version of tilecast: ask Girder

    def put_file_info(self, generation: int, info: GirderFileInfo) -> None:
        key = file_info_key(info.item_id, generation)
        self._put(self._files, {key: json.dumps(asdict(info)).encode()})

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
            log.warning("the cache Redis failed; asking Girder instead: %s", exc)
