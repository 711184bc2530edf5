"""The cache keeper: which keys it deletes, in which order, and what it never touches.

Against a real redis-server of its own with a small ``maxmemory`` (16 MB)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tilecast.common import activity, counters
from tilecast.common.inflight import inflight_key
from tilecast.common.keys import cache_key
from tilecast.common.registry import SOURCES_KEY, generation_key
from tilecast.common.tiles import raw_tile_key
from tilecast.redis_server import RedisServer
from tilecast.workers.keeper import (
    LOCK_KEY,
    Keeper,
    KeeperThread,
    SourceKeys,
    memory,
    parse_key,
    plan,
    serves_interactive,
)

MAXMEMORY = 16 * 1024 * 1024
VALUE = b"x" * 100_000  # ~100 KB, a large tile


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path_factory.mktemp("keeper-redis"), maxmemory="16mb")
    server.start()
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()
    server.stop()


@pytest.fixture
def cache(small_redis: redis.Redis) -> redis.Redis:
    small_redis.flushall()
    return small_redis


def keeper(cache: redis.Redis, now: float) -> Keeper:
    return Keeper(cache, cache, window=600.0, high_water=0.9, low_water=0.5, clock=lambda: now)


def tile(source: str, z: int, x: int) -> str:
    return cache_key("tile", source, 1, 0, z, x, 0, "none", "JPEG.q95.s2")


def fill(cache: redis.Redis, source: str, count: int, levels: tuple[int, ...] = (0, 1, 2)) -> None:
    pipe = cache.pipeline(transaction=False)
    for i in range(count):
        z = levels[i % len(levels)]
        pipe.set(tile(source, z, i), VALUE, ex=3600)
    pipe.execute()


def fill_to(cache: redis.Redis, source: str, fraction: float) -> None:
    """Add ``source`` tiles until used_memory passes ``fraction`` of maxmemory (below
    1.0: Redis's own eviction never starts)."""
    i = 0
    while memory(cache)[0] <= fraction * MAXMEMORY:
        cache.set(tile(source, i % 3, 10_000 + i), VALUE, ex=3600)
        i += 1


def test_parse_key_takes_only_cached_answers() -> None:
    assert parse_key(tile("abc", 3, 1)) == ("tile", "abc", 3)
    assert parse_key(raw_tile_key("abc", 2, 0, 5, 1, 1)) == ("raw", "abc", 5)
    # A source id may hold colons: the key is parsed from the right.
    assert parse_key(tile("girder://item/1:2", 1, 0)) == ("tile", "girder://item/1:2", 1)
    thumb = cache_key("thumb", "abc", 1, 0, "fit", 256, 256, "none", "JPEG.q95.s2")
    assert parse_key(thumb) == ("thumb", "abc", -1)
    for state_key in (
        SOURCES_KEY,
        generation_key("abc"),
        inflight_key(tile("abc", 1, 0)),
        counters.STATS_KEY,
        activity.ACTIVE_KEY,
        LOCK_KEY,
        "interactive",
        "tc:sourcecache",
    ):
        assert parse_key(state_key) is None, state_key


def test_plan_orders_inactive_first_then_active_finest_first() -> None:
    now = 10_000.0
    never = SourceKeys("never", None, [(0, b"n0")])
    old = SourceKeys("old", now - 3600, [(0, b"o0"), (2, b"o2")])
    older = SourceKeys("older", now - 7200, [(1, b"x1")])
    recent = SourceKeys("recent", now - 10, [(0, b"r0"), (3, b"r3"), (-1, b"rthumb")])
    viewing = SourceKeys("viewing", now, [(1, b"v1"), (2, b"v2")])
    order = list(plan([viewing, recent, old, never, older], now, window=600.0))
    assert [v.key for v in order] == [
        b"n0", b"x1", b"o0", b"o2",  # inactive, least recently viewed first
        b"r3", b"r0", b"rthumb",  # active, least recent first, finest level first
        b"v2", b"v1",
    ]  # fmt: skip
    assert [v.active for v in order] == [False] * 4 + [True] * 5


def test_below_high_water_nothing_is_deleted(cache: redis.Redis) -> None:
    fill(cache, "idle", 20)
    assert keeper(cache, time.time()).check() is None
    assert len(cache.keys("tc:tile:idle:*")) == 20


def test_keeps_active_sources_and_deletes_inactive_ones(cache: redis.Redis) -> None:
    now = time.time()
    activity.touch(cache, "active", now - 60)
    activity.touch(cache, "stale", now - 3600)
    fill(cache, "active", 40)
    fill(cache, "stale", 40)
    fill_to(cache, "unknown", 0.92)  # never recorded: treated as inactive
    # State that shares the server: never a victim.
    cache.hset(SOURCES_KEY, "active", "{}")
    cache.set(generation_key("stale"), 1)
    cache.set(inflight_key(tile("stale", 9, 9)), "owner")
    cache.lpush("interactive", "a task")
    used, limit = memory(cache)
    assert limit == MAXMEMORY and used > 0.9 * limit

    result = keeper(cache, now).check()

    assert result is not None and result.deleted > 0
    assert result.deleted_active == 0
    assert memory(cache)[0] <= 0.5 * limit
    assert len(cache.keys("tc:tile:active:*")) == 40
    assert cache.keys("tc:tile:unknown:*") == []  # never viewed goes first
    assert cache.hget(SOURCES_KEY, "active") == b"{}"
    assert cache.get(generation_key("stale")) == b"1"
    assert cache.exists(inflight_key(tile("stale", 9, 9)))
    assert cache.llen("interactive") == 1
    counts = counters.read(cache)
    assert counts[counters.KEEPER_RUNS] == 1
    assert counts[counters.KEEPER_DELETED_KEYS] == result.deleted
    assert counts[counters.KEEPER_FREED_BYTES] > 0
    assert cache.info("stats")["evicted_keys"] == 0  # Redis's own LRU never had to act


def test_least_recently_viewed_inactive_source_goes_first(cache: redis.Redis) -> None:
    now = time.time()
    activity.touch(cache, "hour", now - 3600)
    activity.touch(cache, "day", now - 86400)
    fill(cache, "hour", 60)
    fill(cache, "day", 60)
    result = keeper(cache, now).trim(int(memory(cache)[0] * 0.45))
    assert cache.keys("tc:tile:day:*") == []
    assert len(cache.keys("tc:tile:hour:*")) > 0
    assert result.deleted_active == 0


def test_active_sources_lose_their_finest_levels_only_when_forced(cache: redis.Redis) -> None:
    now = time.time()
    activity.touch(cache, "a", now - 5)
    fill(cache, "a", 100, levels=(0, 1, 2, 3))
    fill_to(cache, "a", 0.92)
    result = keeper(cache, now).check()
    assert result is not None and result.deleted_active == result.deleted > 0
    left = {parse_key(k.decode())[2] for k in cache.keys("tc:tile:a:*")}  # type: ignore[index]
    assert 0 in left and 3 not in left  # coarse tiles kept, the finest level went first
    assert counters.read(cache)[counters.KEEPER_DELETED_ACTIVE_KEYS] == result.deleted


def test_one_keeper_per_cluster(cache: redis.Redis) -> None:
    first = KeeperThread(keeper(cache, time.time()), interval=1.0)
    second = KeeperThread(keeper(cache, time.time()), interval=1.0)
    assert first.holds_lock() is True
    assert first.holds_lock() is True  # renewing
    assert second.holds_lock() is False
    first.stop()  # hands the lock on
    assert second.holds_lock() is True


def test_keeper_thread_trims_in_the_background(cache: redis.Redis) -> None:
    fill_to(cache, "gone", 0.92)
    thread = KeeperThread(keeper(cache, time.time()), interval=0.05)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not counters.read(cache).get(counters.KEEPER_RUNS) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counters.read(cache).get(counters.KEEPER_RUNS, 0) >= 1
    finally:
        thread.stop()
        thread.join(5)
    assert memory(cache)[0] <= 0.9 * MAXMEMORY


def test_a_standby_keeper_yields_to_an_interactive_one(cache: redis.Redis) -> None:
    standby = KeeperThread(keeper(cache, time.time()), interval=1.0, standby=True)
    interactive = KeeperThread(keeper(cache, time.time()), interval=1.0)
    assert standby.holds_lock() is False  # the lock is free, but it waits
    assert interactive.holds_lock() is True
    for _ in range(5):
        assert standby.holds_lock() is False
    interactive.stop()
    assert [standby.holds_lock() for _ in range(3)] == [False, False, True]
    assert standby.holds_lock() is True


def test_nodes_serving_people_run_the_keeper() -> None:
    assert serves_interactive(["interactive.node-1@h", "interactive"])
    assert serves_interactive(["interactive", "bulk"])
    assert not serves_interactive(["bulk"])
