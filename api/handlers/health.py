"""Readiness: what ``/readyz`` checks, each check named in the answer.

Ready means a tile can be served and rendered: the cache and the state Redis answer,
at least one interactive worker node heartbeated within ``TILECAST_WORKER_TTL`` (its
heartbeat key expires on the Redis server after that), and the broker answers when it
is not the state Redis.

Every check runs in a thread of a small shared pool, and ``/readyz`` answers within
``TILECAST_READYZ_TIMEOUT`` whatever the checks do: one that has not finished by then
(a frozen Redis, whose socket timeout may be longer) is reported failed as ``timed
out``. A check left running ends by its own socket timeout; while the pool's threads
are all held, later checks wait in its queue and time out the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection
from kombu.exceptions import OperationalError

from tilecast.api.services import Services
from tilecast.common.redisconn import CacheClient, connect, primaries
from tilecast.common.workers_live import ROLE_INTERACTIVE, read_workers

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Seconds a broker that is not the state Redis (RabbitMQ) may take to accept a
# connection before the probe counts it unreachable.
BROKER_TIMEOUT = 2.0

Check = dict[str, Any]
# Threads for readiness checks (four kinds): a probe never waits on more than its
# deadline, and frozen Redis servers cannot make the checks pile up past this.
CHECK_THREADS = 8
_checks = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="tilecast-readyz")


def readiness(svc: Services) -> tuple[dict[str, Check], list[str]]:
    """``(checks, failed)``: every check's result by name, and the names that failed."""
    settings = svc.settings
    budget = settings.readyz_timeout
    deadline = time.monotonic() + budget
    running: dict[str, Future[Check]] = {
        "cache": _checks.submit(_guarded, lambda: _ping_primaries(svc.cache.client)),
        "state": _checks.submit(_guarded, lambda: _ping(svc.state)),
    }
    if settings.broker_url != settings.state_url:
        running["broker"] = _checks.submit(
            _guarded, lambda: _broker(settings.broker_url, settings.redis_timeouts)
        )
    done = {name: _by(deadline, future, budget) for name, future in running.items()}
    checks = {"cache": done["cache"], "state": done["state"]}
    if done["state"]["ok"]:
        checks["workers"] = _by(deadline, _checks.submit(_guarded, lambda: _workers(svc)), budget)
    else:
        checks["workers"] = _skipped("state")
    if "broker" in done:
        checks["broker"] = done["broker"]
    failed = [name for name, check in checks.items() if not check["ok"]]
    return checks, failed


def _by(deadline: float, future: Future[Check], budget: float) -> Check:
    """The check's result, or a failed check if it is not done by ``deadline``."""
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        future.cancel()  # still queued: never run it
        return {"ok": False, "reason": f"timed out: no answer within {budget:g} s"}


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


def _broker(url: str, timeouts: dict[str, float]) -> Check:
    """A Redis broker is pinged; any other (RabbitMQ) gets a connection opened and closed."""
    if urlsplit(url).scheme in REDIS_SCHEMES:
        client = connect(url, **timeouts)
        try:
            return _ping(client)
        finally:
            client.close()
    with Connection(url, connect_timeout=BROKER_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    return {"ok": True}
