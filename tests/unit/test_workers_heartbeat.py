"""A worker node's heartbeat thread and the sweep of dead nodes' queues (real Redis, own db)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tilecast.common.redisconn import connect
from tilecast.common.routing import affinity_queue, binding_key
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.workers_live import (
    ROLE_INTERACTIVE,
    WorkerInfo,
    gone_nodes,
    heartbeat,
    read_workers,
    worker_key,
)
from tilecast.workers.heartbeat import GONE_RETENTION_SECONDS, Heartbeat, move_queue, sweep

HEARTBEAT_DB = 13


@pytest.fixture
def db_url(redis_url: str) -> Iterator[str]:
    url = f"{redis_url.rsplit('/', 1)[0]}/{HEARTBEAT_DB}"
    client = connect(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def db(db_url: str) -> Iterator[redis.Redis]:
    client = connect(db_url)
    yield client
    client.close()


def test_move_keeps_order_and_goes_first(db: redis.Redis) -> None:
    # kombu pushes on the left and pops on the right: b"1" is the oldest task.
    db.lpush("dead", b"1", b"2", b"3")
    db.lpush(QUEUE_INTERACTIVE, b"waiting")
    assert move_queue(db, "dead", QUEUE_INTERACTIVE) == 3
    popped = [db.rpop(QUEUE_INTERACTIVE) for _ in range(4)]
    assert popped == [b"1", b"2", b"3", b"waiting"]
    assert move_queue(db, "dead", QUEUE_INTERACTIVE) == 0


def test_sweep_moves_dead_queues_then_forgets_them(db: redis.Redis) -> None:
    node = "interactive-1@h"
    info = WorkerInfo(node, ROLE_INTERACTIVE, affinity_queue(node), "h", 1, 1, 0.0)
    heartbeat(db, info, ttl=30)
    db.lpush(affinity_queue(node), b"task")
    assert sweep(db, db, now=1000.0) == 0  # alive: its queue is its own
    db.delete(worker_key(node))  # the heartbeat's TTL ran out
    assert sweep(db, db, now=1001.0) == 1
    assert db.lrange(QUEUE_INTERACTIVE, 0, -1) == [b"task"]
    # An api that still saw it alive sends one more: the next sweeps move it too.
    db.lpush(affinity_queue(node), b"late")
    db.sadd(binding_key(affinity_queue(node)), b"binding")
    assert sweep(db, db, now=1002.0) == 1
    assert gone_nodes(db) == [(node, 1001.0)]
    # After the retention the queue and its binding are deleted and the node forgotten.
    sweep(db, db, now=1001.0 + GONE_RETENTION_SECONDS + 1)
    assert gone_nodes(db) == []
    assert not db.exists(affinity_queue(node), binding_key(affinity_queue(node)))


def test_heartbeat_thread_registers_counts_and_unregisters(db_url: str, db: redis.Redis) -> None:
    settings = Settings(cache_url=db_url, worker_ttl=0.6).resolved()
    node = "interactive-2@h"
    beat = Heartbeat(settings, node, ROLE_INTERACTIVE, affinity_queue(node), 2)
    beat.start()
    try:
        beat.count(affinity_queue(node))
        beat.count(QUEUE_INTERACTIVE)
        beat.count(QUEUE_INTERACTIVE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            live = read_workers(db)
            if live and live[0].received.get(QUEUE_INTERACTIVE) == 2:
                break
            time.sleep(0.05)
        assert [w.node for w in live] == [node]
        assert live[0].received == {affinity_queue(node): 1, QUEUE_INTERACTIVE: 2}
        assert live[0].concurrency == 2
        # It keeps beating past its TTL.
        time.sleep(1.0)
        assert [w.node for w in read_workers(db)] == [node]
    finally:
        beat.stop()
    assert read_workers(db) == []
    assert [n for n, _ in gone_nodes(db)] == [node]  # the others sweep what it left
