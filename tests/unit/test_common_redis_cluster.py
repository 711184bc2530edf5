"""The cache Redis as a Redis Cluster: how one is named, which URLs may name one, and
the cache client's operations against a real three-primary cluster (tests/rediscluster.py):
batched reads and writes across slots, per-node memory and key counts, and the keeper
trimming each primary by its own maxmemory."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.rediscluster import RedisClusterServers
from tilecast.common import activity, counters, metrics
from tilecast.common.cache import TileCache
from tilecast.common.errors import ConfigurationError
from tilecast.common.keys import cache_key
from tilecast.common.redisconn import (
    LazyCluster,
    by_slot,
    connect,
    connect_cache,
    is_cluster_url,
    parse_cluster_url,
    primaries,
)
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port
from tilecast.workers.keeper import Keeper, memory

VALUE = b"x" * 100_000  # ~100 KB, a large tile
NODE_MAXMEMORY = 16 * 1024 * 1024


# -- naming a cluster ---------------------------------------------------------------------


def test_cluster_urls_are_told_apart_by_scheme() -> None:
    assert is_cluster_url("redis+cluster://h:1")
    assert is_cluster_url("REDISS+CLUSTER://h:1,h:2")
    for url in ("redis://h:1/0", "rediss://h:1/0", "unix:///tmp/r.sock", "amqp://h"):
        assert not is_cluster_url(url)


def test_parse_cluster_url_keeps_credentials_tls_and_options() -> None:
    address = parse_cluster_url("rediss+cluster://user:pa%40ss@a:7000,b:7001,[::1]:7002/0?x=1")
    assert address.seeds == (("a", 7000), ("b", 7001), ("::1", 7002))
    assert address.node_url == "rediss://user:pa%40ss@a:7000/0?x=1"
    plain = parse_cluster_url("redis+cluster://a:7000?socket_timeout=3")
    assert plain.seeds == (("a", 7000),) and plain.node_url == "redis://a:7000?socket_timeout=3"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://a:7000/2", "database 0"),
        ("redis+cluster://a,b:7001", "host:port"),
        ("redis+cluster://a:port", "host:port"),
        ("redis+cluster:///0", "at least one node"),
        ("redis://a:7000", "starts with redis"),
    ],
)
def test_parse_cluster_url_names_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_cluster_url(url)


def test_only_the_cache_may_be_a_cluster() -> None:
    cluster = "redis+cluster://a:7000,b:7001"
    settings = Settings(cache_url=cluster, state_url="redis://s:6379/0").resolved()
    assert settings.broker_url == "redis://s:6379/0"
    with pytest.raises(ConfigurationError, match="TILECAST_STATE_URL"):
        Settings(cache_url=cluster).resolved()  # the state would default to the cluster
    with pytest.raises(ConfigurationError, match="TILECAST_STATE_URL names a Redis Cluster"):
        Settings(state_url=cluster).resolved()
    with pytest.raises(ConfigurationError, match="TILECAST_BROKER_URL names a Redis Cluster"):
        Settings(broker_url=cluster).resolved()
    with pytest.raises(ConfigurationError, match="database 0"):
        Settings(cache_url=cluster + "/3", state_url="redis://s:6379/0").resolved()
    env = {"TILECAST_CACHE_URL": cluster, "TILECAST_STATE_URL": "redis://s:6379/1"}
    assert Settings.from_env(env).cache_url == cluster
    with pytest.raises(ConfigurationError, match="only the cache Redis"):
        connect(cluster)


def test_a_single_server_url_gives_the_plain_client() -> None:
    client = connect_cache("redis://127.0.0.1:1/0")
    assert isinstance(client, redis.Redis) and primaries(client) == [client]


def test_a_cluster_client_connects_at_first_use() -> None:
    # Nothing listens there: making the client must not fail, using it must.
    client = connect_cache("redis+cluster://127.0.0.1:1", socket_connect_timeout=0.2)
    assert isinstance(client, LazyCluster)
    client.close()  # closing a client never used connects to nothing
    with pytest.raises(redis.RedisError):
        client.get("tc:tile:x")


def test_by_slot_groups_keys_of_one_slot() -> None:
    keys = [b"a{s}1", b"b{s}2", b"tc:tile:x", b"c{s}3"]
    groups = by_slot(keys)
    assert [b"a{s}1", b"b{s}2", b"c{s}3"] in groups and [b"tc:tile:x"] in groups


# -- against a real cluster ---------------------------------------------------------------


@pytest.fixture
def cluster(redis_cluster: RedisClusterServers) -> Iterator[LazyCluster]:
    client = connect_cache(redis_cluster.url)
    assert isinstance(client, LazyCluster)
    for node in primaries(client):
        node.flushall()
        node.config_set("maxmemory", "256mb")
    yield client
    for node in primaries(client):
        node.config_set("maxmemory", "256mb")
    client.close()


def tile(source: str, z: int, x: int) -> str:
    return cache_key("tile", source, 1, 0, z, x, 0, "none", "JPEG.q95.s2")


def node_of(client: LazyCluster, key: str) -> str:
    return str(client.cluster().get_node_from_key(key).name)


def test_tile_cache_batches_across_slots_and_nodes(cluster: LazyCluster) -> None:
    cache = TileCache(cluster, ttl=600)
    source = uuid.uuid4().hex
    items = {tile(source, 5, x): f"tile {x}".encode() for x in range(64)}
    cache.put_many(items)
    keys = [*items, tile(source, 5, 999)]
    assert cache.get_many(keys) == [*items.values(), None]
    assert cache.get(keys[3]) == b"tile 3" and cache.exists(keys[3])
    assert 0 < cluster.ttl(keys[0]) <= 600
    # One image's tiles spread over every node: no hash tag ties them to one.
    assert len({node_of(cluster, key) for key in items}) == 3
    assert activity.get_and_touch(cluster, keys[0], source) == b"tile 0"
    assert source in activity.last_seen(cluster)


def test_metrics_sum_the_primaries(cluster: LazyCluster) -> None:
    cache = TileCache(cluster, ttl=600)
    cache.put_many({tile("m", 4, x): b"t" for x in range(30)})
    activity.touch(cluster, "m")
    numbers = metrics.read_tile_cache(cluster, 600.0, evicted_by_keeper=0)
    nodes = primaries(cluster)
    assert len(nodes) == 3
    assert numbers["keys"] == sum(int(node.dbsize()) for node in nodes) == 31
    assert numbers["max_bytes"] == 3 * 256 * 1024 * 1024
    assert numbers["used_bytes"] >= sum(memory(node)[0] for node in nodes) // 2
    assert numbers["active_sources"] == 1


def fill_node(cluster: LazyCluster, node: redis.Redis, source: str, fraction: float) -> int:
    """Write ``source`` tiles that hash to ``node`` until its used_memory passes
    ``fraction`` of its maxmemory (below 1.0: Redis's own eviction never starts)."""
    name = f"{node.get_connection_kwargs()['host']}:{node.get_connection_kwargs()['port']}"
    written, i = 0, 0
    while memory(node)[0] <= fraction * NODE_MAXMEMORY:
        key = tile(source, i % 3, i)
        i += 1
        if node_of(cluster, key) == name:
            cluster.set(key, VALUE, ex=3600)
            written += 1
    return written


def keys_on(node: redis.Redis, source: str) -> int:
    return sum(1 for _key in node.scan_iter(match=f"tc:tile:{source}:*", count=1000))


def test_keeper_trims_each_primary_above_its_own_high_water(
    cluster: LazyCluster, redis_url: str
) -> None:
    nodes = primaries(cluster)
    for node in nodes:
        node.config_set("maxmemory", str(NODE_MAXMEMORY))
    now = time.time()
    activity.touch(cluster, "viewing", now - 30)
    activity.touch(cluster, "stale", now - 7200)
    full, other, calm = nodes
    for node in (full, other):
        fill_node(cluster, node, "viewing", 0.3)
        fill_node(cluster, node, "stale", 0.93)
    fill_node(cluster, calm, "stale", 0.5)
    calm_keys = keys_on(calm, "stale")

    # The keeper's counters go to a state database of this test's own.
    state = connect(redis_url.rsplit("/", 1)[0] + "/14")
    state.flushdb()
    keeper = Keeper(cluster, state, window=600.0, high_water=0.9, low_water=0.6, clock=lambda: now)
    result = keeper.check()

    assert result is not None and result.deleted > 0
    for node in (full, other):
        assert memory(node)[0] <= 0.6 * NODE_MAXMEMORY
        assert keys_on(node, "viewing") > 0  # the stale source went first
    assert result.deleted_active == 0
    assert keys_on(calm, "stale") == calm_keys  # below its high-water mark: untouched
    assert keeper.check() is None
    assert (
        int(state.hget(counters.STATS_KEY, counters.KEEPER_RUNS) or 0) == 2
    )  # one per node trimmed
    state.close()


def test_readiness_needs_every_primary(
    settings: Settings, redis_cluster: RedisClusterServers, redis_url: str
) -> None:
    from dataclasses import replace

    from tilecast.api.app import create_app

    state_url = redis_url.rsplit("/", 1)[0] + "/14"
    ready = create_app(replace(settings, cache_url=redis_cluster.url, state_url=state_url))
    body = ready.test_client().get("/readyz").get_json()
    assert body["checks"]["cache"] == {"ok": True}
    dead = f"redis+cluster://127.0.0.1:{free_port()}"
    down = create_app(
        replace(settings, cache_url=dead, state_url=state_url, broker_url=state_url)
    )  # building the app costs no round trip, even with no cluster there
    body = down.test_client().get("/readyz").get_json()
    assert body["checks"]["cache"] == {"ok": False, "reason": "unreachable: ConnectionError"}
    assert "cache" in body["failed"]


def test_girder_shared_blocks_on_a_cluster(
    cluster: LazyCluster, redis_cluster: RedisClusterServers
) -> None:
    from tilecast.workers.girder.shared import SharedTier, block_key

    tier = SharedTier(redis_cluster.url, block_ttl=60, file_ttl=60, block_size=4096)
    blocks = {i: bytes([i]) * 10 for i in range(0, 40, 2)}
    tier.put_blocks("file-v1", blocks)
    found = tier.blocks("file-v1", list(range(40)))
    assert found == [blocks.get(i) for i in range(40)]
    assert len({node_of(cluster, block_key("file-v1", 4096, i)) for i in blocks}) == 3
    assert tier.stats.failures == 0 and tier.stats.hits == len(blocks)
    tier.close()
