"""/readyz: Redis, a live interactive worker and the broker, each check named."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask

from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION
from tilecast.common.redisconn import connect
from tilecast.common.settings import Settings
from tilecast.common.workers_live import WorkerInfo, heartbeat, unregister
from tilecast.redis_server import free_port


@pytest.fixture
def private_url(redis_url: str) -> Iterator[str]:
    """A database of the test Redis where no worker of the other tests heartbeats."""
    url = redis_url.rsplit("/", 1)[0] + "/8"
    client = connect(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def _app(settings: Settings, url: str, **changes: object) -> Flask:
    return create_app(replace(settings, cache_url=url, state_url=url, broker_url=url, **changes))


def _worker(role: str) -> WorkerInfo:
    return WorkerInfo(
        node=f"{role}-readyz@test", role=role, queue=None, host="test", pid=1,
        concurrency=1, started=time.time(),
    )  # fmt: skip


def test_not_ready_without_a_live_interactive_worker(settings: Settings, private_url: str) -> None:
    app = _app(settings, private_url)
    state = app.extensions[EXTENSION].state
    heartbeat(state, _worker("bulk"), ttl=30)  # bulk nodes render no interactive tile
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["error"] == "service_unavailable" and body["failed"] == ["workers"]
    assert body["checks"]["cache"] == {"ok": True} and body["checks"]["state"] == {"ok": True}
    assert body["checks"]["workers"]["live"] == {"bulk": 1}
    assert "broker" not in body["checks"]  # the broker is the state Redis: checked already


def test_ready_with_a_live_interactive_worker(settings: Settings, private_url: str) -> None:
    app = _app(settings, private_url)
    state: redis.Redis = app.extensions[EXTENSION].state
    worker = _worker("interactive")
    heartbeat(state, worker, ttl=30)
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["status"] == "ready"
        assert body["checks"]["workers"] == {"ok": True, "live": {"interactive": 1}, "ttl": 5.0}
    finally:
        unregister(state, worker.node, time.time())
    # A node that stopped (or whose heartbeat expired) counts no more.
    assert app.test_client().get("/readyz").status_code == 503


def test_an_unreachable_broker_fails_its_own_check(settings: Settings, private_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    app = create_app(
        replace(settings, cache_url=private_url, state_url=private_url, broker_url=dead)
    )
    state = app.extensions[EXTENSION].state
    worker = _worker("interactive")
    heartbeat(state, worker, ttl=30)
    try:
        response = app.test_client().get("/readyz")
    finally:
        unregister(state, worker.node, time.time())
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
