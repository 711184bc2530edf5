"""The parts of common that live in Redis: in-flight markers, registry, cache, stats."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import redis

from tilecast.common import counters
from tilecast.common.cache import TileCache
from tilecast.common.errors import UnknownSource
from tilecast.common.inflight import (
    DONE_CHANNEL,
    Completion,
    announce,
    claim,
    inflight_key,
    is_inflight,
)
from tilecast.common.registry import SourceRecord, SourceRegistry, generation_key


def unique() -> str:
    return uuid.uuid4().hex[:24]


def test_claim_has_one_winner_and_expires(state: redis.Redis) -> None:
    key = f"tc:tile:{unique()}"
    assert claim(state, key, "a", ttl=0.3)
    assert not claim(state, key, "b", ttl=0.3)
    assert is_inflight(state, key)
    time.sleep(0.4)
    assert claim(state, key, "c", ttl=5)


def test_announce_drops_marker_and_publishes(state: redis.Redis) -> None:
    key = f"tc:tile:{unique()}"
    pubsub = state.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DONE_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    claim(state, key, "a", ttl=30)
    announce(state, Completion(key, error={"error": "render_failed", "message": "m"}))
    assert not state.exists(inflight_key(key))
    message = None
    deadline = time.monotonic() + 2
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
    pubsub.close()
    assert message is not None
    completion = Completion.decode(message["data"])
    assert completion.key == key and completion.error == {"error": "render_failed", "message": "m"}


def test_registry(state: redis.Redis) -> None:
    registry = SourceRegistry(state)
    source = unique()
    assert registry.generation(source) is None and not registry.exists(source)
    with pytest.raises(UnknownSource):
        registry.get(source)
    record = SourceRecord(source, "/a/b.tiff", "b.tiff", {"levels": 1})
    assert registry.add(record) is True
    assert registry.get(source) == replace(record, generation=1)  # stored under it
    assert registry.generation(source) == 1
    assert registry.add(record) is False  # re-adding bumps the generation, keeps the id
    assert registry.generation(source) == 2
    assert registry.bump_generation(source) == 3
    assert state.get(generation_key(source)) == b"3"
    assert registry.get(source).generation == 3  # the record moves with its generation
    assert record.summary()["id"] in {r.id for r in registry.all()}
    with pytest.raises(UnknownSource):
        registry.bump_generation(unique())


def test_cache_ttl_and_many(state: redis.Redis) -> None:
    cache = TileCache(state, ttl=100)
    key = f"tc:tile:{unique()}"
    cache.put(key, b"bytes")
    assert cache.get(key) == b"bytes" and cache.exists(key)
    assert 0 < state.ttl(key) <= 100
    assert cache.get_many([key, key + "x"]) == [b"bytes", None]
    assert cache.get_many([]) == []


def test_stats(state: redis.Redis) -> None:
    name = f"test_{unique()}"
    counters.incr(state, name)
    counters.incr(state, name, 2)
    assert counters.read(state)[name] == 3


def test_clients_are_not_capped_at_redis_pys_100_connections(redis_url: str) -> None:
    from tilecast.common.redisconn import connect

    client = connect(redis_url)
    held = [client.connection_pool.get_connection() for _ in range(150)]
    try:
        assert len(held) == 150
    finally:
        for connection in held:
            client.connection_pool.release(connection)
        client.close()
