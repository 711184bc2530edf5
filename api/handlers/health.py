"""Readiness: what ``/readyz`` checks, each check named in the answer.

Ready means a tile can be served and rendered: the cache and the state Redis answer,
at least one interactive worker node heartbeated within ``TILECAST_WORKER_TTL`` (its
heartbeat key expires on the Redis server after that), and the broker answers when it
is not the state Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection
from kombu.exceptions import OperationalError

from api.services import Services
from common.redisconn import CacheClient, connect, primaries
from common.workers_live import ROLE_INTERACTIVE, read_workers

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Seconds a broker that is not the state Redis (RabbitMQ) may take to accept a
# connection before the probe counts it unreachable.
BROKER_TIMEOUT = 2.0

Check = dict[str, Any]


def readiness(svc: Services) -> tuple[dict[str, Check], list[str]]:
    """``(checks, failed)``: every check's result by name, and the names that failed."""
    settings = svc.settings
    checks: dict[str, Check] = {
        "cache": _guarded(lambda: _ping_primaries(svc.cache.client)),
        "state": _guarded(lambda: _ping(svc.state)),
    }
    checks["workers"] = (
        _guarded(lambda: _workers(svc)) if checks["state"]["ok"] else _skipped("state")
    )
    if settings.broker_url != settings.state_url:
        checks["broker"] = _guarded(lambda: _broker(settings.broker_url))
    failed = [name for name, check in checks.items() if not check["ok"]]
    return checks, failed


def _guarded(check: Callable[[], Check]) -> Check:
    try:
        return check()
    except (redis.exceptions.RedisError, OperationalError, OSError) as exc:
        return {"ok": False, "reason": f"unreachable: {type(exc).__name__}"}


def _skipped(because: str) -> Check:
    return {"ok": False, "reason": f"not checked: {because} failed"}


def _ping(client: redis.Redis) -> Check:
    client.ping()
    return {"ok": True}


def _ping_primaries(client: CacheClient) -> Check:
    """Every primary of a cache cluster must answer: each holds a share of every image."""
    for node in primaries(client):
        node.ping()
    return {"ok": True}


def _workers(svc: Services) -> Check:
    live: dict[str, int] = {}
    for worker in read_workers(svc.state):
        live[worker.role] = live.get(worker.role, 0) + 1
    ok = live.get(ROLE_INTERACTIVE, 0) > 0
    check: Check = {"ok": ok, "live": live, "ttl": svc.settings.worker_ttl}
    if not ok:
        check["reason"] = "no live interactive worker node"
    return check


def _broker(url: str) -> Check:
    """A Redis broker is pinged; any other (RabbitMQ) gets a connection opened and closed."""
    if urlsplit(url).scheme in REDIS_SCHEMES:
        client = connect(url)
        try:
            return _ping(client)
        finally:
            client.close()
    with Connection(url, connect_timeout=BROKER_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    return {"ok": True}
