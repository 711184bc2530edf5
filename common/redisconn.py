"""Redis connections with the timeouts every tilecast process uses.

The cache Redis may be a Redis Cluster, named by a ``redis+cluster://`` (or
``rediss+cluster://``) URL with one or more seed nodes:
``redis+cluster://[user:password@]host:port[,host:port...][?option=value]``. The state
Redis and the broker are always one server: :func:`connect` refuses a cluster URL, and
:func:`connect_cache` is the one place a cache client is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster, key_slot
from redis.exceptions import RedisClusterException

from tilecast.common.errors import ConfigurationError

# redis-py 8 caps a client's pool at 100 connections unless told otherwise, and then fails
# with "Too many connections": an api process with more threads than that (every thread
# waiting on a render holds one) must not turn its own thread count into 503s.
MAX_CONNECTIONS = 4096
# Seconds to open a connection, and to wait for any one reply, unless the settings say
# otherwise (TILECAST_REDIS_CONNECT_TIMEOUT, TILECAST_REDIS_TIMEOUT). A timed-out command
# is not retried: a frozen Redis (stopped, swapping, partitioned) must cost a request one
# timeout and then a 503, not one per retry. A dropped connection is still retried once,
# at once (a restarted Redis, a stale pooled connection).
CONNECT_TIMEOUT = 2.0
TIMEOUT = 5.0
CONNECTION_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": CONNECT_TIMEOUT,
    "socket_timeout": TIMEOUT,
    "health_check_interval": 30,
    "retry_on_timeout": False,
    "max_connections": MAX_CONNECTIONS,
}


def connection_options(
    timeout: float | None = None, connect_timeout: float | None = None
) -> dict[str, Any]:
    """CONNECTION_OPTIONS with these timeouts (seconds; None: the defaults). Options in
    a URL's query (``?socket_timeout=1``) still win: one role may differ."""
    options = dict(CONNECTION_OPTIONS)
    if timeout is not None:
        options["socket_timeout"] = timeout
    if connect_timeout is not None:
        options["socket_connect_timeout"] = connect_timeout
    return options


# The scheme suffix that names a Redis Cluster; the node connections use the scheme
# without it (redis: plain TCP, rediss: TLS).
CLUSTER_SUFFIX = "+cluster"
CLUSTER_SCHEMES = ("redis" + CLUSTER_SUFFIX, "rediss" + CLUSTER_SUFFIX)


def connect(
    url: str, *, timeout: float | None = None, connect_timeout: float | None = None
) -> redis.Redis:
    """A client of one Redis server that returns bytes and never hangs forever: each
    reply waits at most ``timeout`` seconds, a connection ``connect_timeout``."""
    if is_cluster_url(url):
        raise ConfigurationError(
            f"{url!r} names a Redis Cluster: only the cache Redis (TILECAST_CACHE_URL) may be one"
        )
    return redis.Redis.from_url(url, **connection_options(timeout, connect_timeout))


# -- the cache Redis: one server or a cluster ---------------------------------------------


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed cluster URL: the first seed as a plain node URL (credentials, TLS and
    query options included, for redis-py to parse) and every seed's (host, port)."""

    node_url: str
    seeds: tuple[tuple[str, int], ...]


def parse_cluster_url(url: str) -> ClusterAddress:
    """Split ``redis+cluster://[auth@]h1:p1,h2:p2[/0][?query]``; ConfigurationError
    naming what is wrong otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ConfigurationError(f"{url!r}: a cluster URL starts with redis+cluster://")
    netloc, slash, tail = rest.partition("/")
    if not slash:
        netloc, _q, query = rest.partition("?")
        tail = f"?{query}" if query else ""
    else:
        tail = "/" + tail
    path = tail.split("?", 1)[0]
    if path not in ("", "/", "/0"):
        raise ConfigurationError(f"{url!r}: a Redis Cluster has only database 0")
    auth, _at, hosts = netloc.rpartition("@")
    seeds = tuple(_seed(url, part) for part in hosts.split(",") if part.strip())
    if not seeds:
        raise ConfigurationError(f"{url!r}: name at least one node, host:port")
    plain = scheme.lower().removesuffix(CLUSTER_SUFFIX)
    first = _netloc(*seeds[0])
    node_url = f"{plain}://{auth + '@' if auth else ''}{first}{tail}"
    return ClusterAddress(node_url, seeds)


def _seed(url: str, part: str) -> tuple[str, int]:
    parsed = urlsplit("//" + part.strip())
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        raise ConfigurationError(f"{url!r}: {part!r} is not host:port")
    return parsed.hostname, port


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LazyCluster:
    """A RedisCluster client made at first use.

    redis-py's cluster client asks a seed for the slot map as it is constructed; made
    lazily, building a process's services costs no round trip (as with one server), a
    cluster that is down at start shows as a failed readiness check instead of a
    process that cannot start, and no topology is inherited across a fork. Every
    attribute is the cluster client's."""

    def __init__(self, factory: Callable[[], RedisCluster]) -> None:
        self._factory = factory
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> RedisCluster:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = _translated(self._factory)()
                client = self._client
        return client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.cluster(), name)
        if not callable(attribute):
            return attribute
        method = _pipelines(attribute) if name == "pipeline" else _translated(attribute)
        # Kept on the instance: the next lookup (every hit's GET) skips __getattr__.
        setattr(self, name, method)
        return method

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _translated(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` raising redis.ConnectionError where the cluster client raises its own
    RedisClusterException (no node reachable, a slot no node serves), which is no
    RedisError: tilecast answers Redis failures as such (a 503, a failed readiness
    check, a skipped shared tier), a cluster's like a server's."""

    def call_translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except RedisClusterException as exc:
            raise redis.exceptions.ConnectionError(f"Redis Cluster: {exc}") from exc

    return call_translated


def _pipelines(make: Callable[..., Any]) -> Callable[..., Any]:
    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make(*args, **kwargs)
        pipe.execute = _translated(pipe.execute)
        return pipe

    return pipeline


CacheClient = redis.Redis | LazyCluster


def connect_cache(
    url: str, *, timeout: float | None = None, connect_timeout: float | None = None, **options: Any
) -> CacheClient:
    """The cache Redis's client: one server, or a cluster for a cluster URL.

    ``timeout`` and ``connect_timeout`` as for :func:`connect`; other ``options``
    replace the usual connection options (timeouts, pool size)."""
    options = options or connection_options(timeout, connect_timeout)
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    address = parse_cluster_url(url)
    # Cluster node connections take no health-check option; the cluster client retries
    # (and refreshes its slot map) on connection errors itself.
    node_options = {k: v for k, v in options.items() if k != "health_check_interval"}
    return LazyCluster(
        lambda: RedisCluster(
            url=address.node_url,
            startup_nodes=[ClusterNode(host, port) for host, port in address.seeds[1:]],
            **node_options,
        )
    )


def is_cluster(client: CacheClient) -> bool:
    return isinstance(client, LazyCluster)


def primaries(client: CacheClient) -> list[redis.Redis]:
    """A client of each primary node: the server itself, or every cluster primary.

    Per-node commands (INFO, DBSIZE, SCAN) go through these; on a cluster each answers
    about its own keys only."""
    if not isinstance(client, LazyCluster):
        return [client]
    cluster = client.cluster()
    return [cluster.get_redis_connection(node) for node in cluster.get_primaries()]


def mget(client: CacheClient, keys: Sequence[str]) -> list[bytes | None]:
    """MGET; on a cluster one MGET per hash slot, pipelined to every node at once."""
    if isinstance(client, LazyCluster):
        return client.cluster().mget_nonatomic(list(keys))  # type: ignore[no-any-return]
    return client.mget(keys)  # type: ignore[return-value]


def by_slot(keys: Sequence[bytes]) -> list[list[bytes]]:
    """``keys`` grouped by hash slot: a multi-key command on a cluster node must name
    keys of one slot."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return list(groups.values())
