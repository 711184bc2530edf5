"""Source affinity: a source's tiles go to the worker rendezvous hashing picks; when that
worker is killed its share moves to the others within seconds and requests succeed.

Two extra interactive workers join the session worker's interactive node. Each node
reports, in its heartbeat, how many tasks it received from each queue; tasks from a
node's own queue are the ones routed to it for affinity.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.conftest import ApiServer, Child, WorkerNode
from tilecast.api.miss.routing import LIVE_SECONDS
from tilecast.common.routing import candidates, pick
from tilecast.common.workers_live import WorkerInfo, read_workers

pytestmark = pytest.mark.integration

TILES = [(x, y) for y in range(3) for x in range(4)]  # the 1000 x 700 image's finest level
WORKER_TTL = "2"  # seconds: the killed worker drops out soon


def live(state: redis.Redis) -> dict[str, WorkerInfo]:
    return {w.node: w for w in candidates(read_workers(state))}


def own_count(state: redis.Redis, node: str) -> int:
    """Tasks the node received from its own queue (0 once it is gone)."""
    info = live(state).get(node)
    return info.received.get(info.queue or "", 0) if info else 0


def received_total(state: redis.Redis) -> int:
    """Tasks every node has received from any queue, as their heartbeats last said."""
    return sum(sum(worker.received.values()) for worker in read_workers(state))


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_source_affinity_and_failover(
    api: ApiServer,
    worker: Child,
    state: redis.Redis,
    images: dict[str, Path],
    source_root: Path,
    start_worker: Callable[..., WorkerNode],
) -> None:
    extra = {
        n.node: n
        for n in (start_worker("interactive", 1, {"TILECAST_WORKER_TTL": WORKER_TTL}) for _ in "ab")
    }
    nodes = live(state)
    assert set(extra) <= set(nodes) and len(nodes) >= 3
    # The api rereads the live set on use once its reading is LIVE_SECONDS old: after
    # this, its next reading includes the extra nodes (a lower bound, not a race).
    time.sleep(LIVE_SECONDS * 1.5)

    # A source that one of the extra workers owns (copies of one image have new ids).
    received_before = received_total(state)
    for i in range(40):
        path = source_root / f"affinity-{i}.png"
        shutil.copy(images["png"], path)
        source = api.register(path)
        owner = pick(source, list(nodes.values()))
        if owner is not None and owner.node in extra:
            break
    else:
        pytest.fail("no source hashed to an extra worker")

    # Registering sent describe tasks too: wait until the heartbeats have counted them
    # all, or one counted late would look like a tile sent to its node.
    wait_for(
        "the describe tasks to be counted",
        lambda: received_total(state) >= received_before + i + 1,
    )
    counts = {node: own_count(state, node) for node in nodes}
    for x, y in TILES[:8]:
        response = api.get(f"/item/{source}/tiles/zxy/2/{x}/{y}")
        assert response.status_code == 200, response.text
    # Every tile went to the owner's own queue (heartbeats carry the counts).
    wait_for("the owner's count", lambda: own_count(state, owner.node) >= counts[owner.node] + 8)
    after = {node: own_count(state, node) for node in nodes}
    assert after[owner.node] - counts[owner.node] == 8
    assert all(after[n] == counts[n] for n in nodes if n != owner.node)

    # Kill the owner outright: no warm shutdown, no unregistering.
    os.killpg(extra[owner.node].child.proc.pid, signal.SIGKILL)
    others = [w for n, w in nodes.items() if n != owner.node]
    heir = pick(source, others)
    assert heir is not None
    before = own_count(state, heir.node)
    started = time.monotonic()
    for x, y in TILES:
        response = api.get(f"/item/{source}/tiles/zxy/2/{x}/{y}?encoding=PNG")
        assert response.status_code == 200, response.text
    elapsed = time.monotonic() - started
    # The first tile may wait until the owner is seen gone (its heartbeat's TTL); its
    # task is then sent again. Every tile after it goes straight to the heir.
    wait_for("the heir's count", lambda: own_count(state, heir.node) >= before + len(TILES) - 1)
    print(f"{len(TILES)} tiles after the kill in {elapsed:.1f} s")
    assert owner.node not in live(state)
    # The dead node's own queue is swept into the shared queue, then emptied.
    assert owner.queue is not None
    wait_for("the dead queue to be swept", lambda: state.llen(owner.queue) == 0)
