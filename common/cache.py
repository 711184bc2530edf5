"""The tile cache client: rendered tiles and unstyled intermediates in the cache Redis.

Every lookup is one round trip. Values are plain bytes (never pickles); entries carry
a TTL when one is configured so that a Redis shared with state can use volatile-lru.
The client may be a Redis Cluster's (common/redisconn.py): a single-key command goes to
the key's node, and a batch (``get_many``, ``put_many``) is split by node and sent to
every node at once, so it still costs one round trip's time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tilecast.common.redisconn import CacheClient, mget


class TileCache:
    def __init__(self, client: CacheClient, *, ttl: int = 0) -> None:
        self.client = client
        self.ttl = ttl

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[return-value]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return mget(self.client, keys)

    def put(self, key: str, data: bytes) -> None:
        self.client.set(key, data, ex=self.ttl or None)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Several ``put`` in one round trip."""
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, data in items.items():
            pipe.set(key, data, ex=self.ttl or None)
        pipe.execute()

    def exists(self, key: str) -> bool:
        return bool(self.client.exists(key))

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        """``exists`` of each key, in one round trip (per node of a cluster)."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()]
