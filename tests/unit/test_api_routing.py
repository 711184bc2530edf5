"""Routing of interactive work: rendezvous hashing, liveness, spill-over, backpressure,
and the dispatcher's take-over of work left with a dead worker (real Redis, own db)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis

from tilecast.api.miss.completion import CompletionListener
from tilecast.api.miss.dispatch import Dispatcher
from tilecast.api.miss.routing import Router
from tilecast.common.errors import Overloaded
from tilecast.common.inflight import Completion, announce, inflight_key, marker_queue, marker_value
from tilecast.common.redisconn import connect
from tilecast.common.routing import affinity_queue, candidates, is_affinity_queue, pick
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.workers_live import (
    ROLE_BULK,
    ROLE_INTERACTIVE,
    WorkerInfo,
    gone_nodes,
    heartbeat,
    mark_dead,
    read_workers,
    unregister,
    worker_key,
)

ROUTING_DB = 12  # not the db the integration tests' workers and apis use


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(f"{redis_url.rsplit('/', 1)[0]}/{ROUTING_DB}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def info(node: str, concurrency: int = 1, role: str = ROLE_INTERACTIVE) -> WorkerInfo:
    queue = affinity_queue(node) if role == ROLE_INTERACTIVE else None
    return WorkerInfo(node, role, queue, "h", 1, concurrency, 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def router(db: redis.Redis, clock: Clock, max_depth: int = 5, affinity: int = 2) -> Router:
    return Router(db, db, max_depth=max_depth, affinity_depth=affinity, clock=clock)


# --- rendezvous hashing ----------------------------------------------------------------


def test_pick_is_stable_weighted_and_moves_only_the_departed_share() -> None:
    workers = [info("a@h"), info("b@h"), info("c@h", concurrency=2)]
    keys = [uuid.uuid4().hex for _ in range(4000)]
    owners = {key: pick(key, workers) for key in keys}
    assert all(pick(key, list(reversed(workers))) == owners[key] for key in keys[:200])
    shares = Counter(owner.node for owner in owners.values() if owner)
    # Weights 1:1:2 -> about 1/4, 1/4, 1/2.
    assert 0.4 < shares["c@h"] / len(keys) < 0.6
    assert 0.18 < shares["a@h"] / len(keys) < 0.32
    survivors = [w for w in workers if w.node != "b@h"]
    for key in keys:
        after = pick(key, survivors)
        if owners[key] is not None and owners[key].node != "b@h":  # type: ignore[union-attr]
            assert after == owners[key]  # nobody else's sources move
    assert pick("x", []) is None


def test_queue_names_and_markers() -> None:
    assert affinity_queue("interactive-1@h") == "interactive.interactive-1@h"
    assert is_affinity_queue("interactive.interactive-1@h")
    assert not is_affinity_queue(QUEUE_INTERACTIVE) and not is_affinity_queue("bulk")
    assert marker_queue(marker_value("h:1:2", "interactive.n@h").encode()) == "interactive.n@h"
    assert marker_queue(marker_value("h:1:2")) is None
    assert marker_queue(None) is None


# --- liveness ---------------------------------------------------------------------------


def test_heartbeats_liveness_and_sweep_bookkeeping(db: redis.Redis) -> None:
    heartbeat(db, info("a@h"), ttl=5)
    heartbeat(db, info("b@h"), ttl=5)
    heartbeat(db, info("bulk@h", role=ROLE_BULK), ttl=5)
    assert [w.node for w in read_workers(db)] == ["a@h", "b@h", "bulk@h"]
    assert [w.node for w in candidates(read_workers(db))] == ["a@h", "b@h"]
    db.delete(worker_key("b@h"))  # its TTL ran out
    assert [w.node for w in read_workers(db)] == ["a@h", "bulk@h"]
    assert mark_dead(db, now=1.0) == ["b@h"]
    assert gone_nodes(db) == [("b@h", 1.0)]
    unregister(db, "a@h", now=2.0)
    assert [n for n, _ in gone_nodes(db)] == ["b@h", "a@h"]
    heartbeat(db, info("b@h"), ttl=5)  # it was only slow: back, no longer gone
    assert [n for n, _ in gone_nodes(db)] == ["a@h"]
    assert [w.node for w in candidates(read_workers(db))] == ["b@h"]


# --- the router ---------------------------------------------------------------------------


def test_routes_to_the_owner_then_spills_then_refuses(db: redis.Redis) -> None:
    clock = Clock()
    workers = [info("a@h"), info("b@h")]
    for w in workers:
        heartbeat(db, w, ttl=30)
    r = router(db, clock, max_depth=3, affinity=2)
    source = "s1"
    owner = pick(source, workers)
    assert owner is not None and owner.queue is not None
    # Affinity: up to 2 tasks per process in the owner's own queue (counted locally).
    assert [r.route(source), r.route(source)] == [owner.queue] * 2
    # The owner looks busy: its tasks spill to the shared queue, up to its bound.
    assert [r.route(source) for _ in range(3)] == [QUEUE_INTERACTIVE] * 3
    with pytest.raises(Overloaded):
        r.route(source)
    # The broker's lists are the truth: once the queues drain (a re-reading), room again.
    clock.now += 0.3
    assert r.route(source) == owner.queue
    # Real depths: a full shared list refuses even a fresh router's first send...
    db.rpush(QUEUE_INTERACTIVE, *[b"task"] * 3)
    db.rpush(owner.queue, *[b"task"] * 2)
    with pytest.raises(Overloaded):
        router(db, clock, max_depth=3, affinity=2).route(source)
    # ...while work without a source (or with affinity off) goes to the shared queue.
    db.delete(QUEUE_INTERACTIVE)
    assert router(db, clock, max_depth=3, affinity=2).route(None) == QUEUE_INTERACTIVE
    assert router(db, clock, max_depth=3, affinity=0).route(source) == QUEUE_INTERACTIVE


def test_no_live_worker_or_no_bound(db: redis.Redis) -> None:
    clock = Clock()
    assert router(db, clock).route("s") == QUEUE_INTERACTIVE  # nobody registered
    unbounded = router(db, clock, max_depth=0, affinity=0)
    db.rpush(QUEUE_INTERACTIVE, *[b"task"] * 50)
    assert all(unbounded.route("s") == QUEUE_INTERACTIVE for _ in range(20))
    # A broker the router cannot read (not Redis): affinity without a depth bound.
    heartbeat(db, info("a@h"), ttl=30)
    blind = Router(db, None, max_depth=1, affinity_depth=1, clock=clock)
    assert all(blind.route("s") == affinity_queue("a@h") for _ in range(5))


def test_a_dead_worker_is_gone_within_the_live_reading(db: redis.Redis) -> None:
    clock = Clock()
    heartbeat(db, info("a@h"), ttl=30)
    heartbeat(db, info("b@h"), ttl=30)
    r = router(db, clock)
    assert not r.is_gone(affinity_queue("a@h"))
    assert not r.is_gone(QUEUE_INTERACTIVE)  # the shared queue is never gone
    db.delete(worker_key("a@h"))
    assert not r.is_gone(affinity_queue("a@h"))  # the reading is still fresh
    clock.now += 1.1
    assert r.is_gone(affinity_queue("a@h"))
    assert r.route("any source") == affinity_queue("b@h")  # the only one left


def test_a_node_lost_between_readings_is_counted_once(db: redis.Redis) -> None:
    clock = Clock()
    heartbeat(db, info("a@h"), ttl=30)
    heartbeat(db, info("b@h"), ttl=30)
    heartbeat(db, info("bulk@h", role=ROLE_BULK), ttl=30)
    r = router(db, clock)
    assert r.losses() == 0
    db.delete(worker_key("bulk@h"))  # a bulk node too: it may hold a marked tile
    assert r.losses() == 0  # the reading is still fresh
    clock.now += 1.1
    assert r.losses() == 1
    heartbeat(db, info("c@h"), ttl=30)  # a node joining is no loss
    clock.now += 1.1
    assert r.losses() == 1
    db.delete(worker_key("a@h"), worker_key("c@h"))
    clock.now += 1.1
    assert r.losses() == 2
    clock.now += 1.1
    assert r.losses() == 2


# --- the dispatcher's take-over ------------------------------------------------------------


class DeadThenLive:
    """Routes: the first send goes to a queue whose worker then dies; later ones live."""

    def __init__(self) -> None:
        self.routes = ["interactive.dead@h", "interactive.live@h"]
        self.dead = threading.Event()

    def route(self) -> str:
        return self.routes.pop(0) if self.routes else "interactive.live@h"

    def is_gone(self, queue: str) -> bool:
        return queue == "interactive.dead@h" and self.dead.is_set()

    def losses(self) -> int:
        return 0


def test_waiters_send_again_when_the_marker_names_a_dead_worker(
    db: redis.Redis, redis_url: str
) -> None:
    listener = CompletionListener(lambda: connect(f"{redis_url.rsplit('/', 1)[0]}/{ROUTING_DB}"))
    routes = DeadThenLive()
    key = f"tc:test:{uuid.uuid4().hex}"
    sends: list[str | None] = []

    def send() -> str:
        queue = routes.route()
        sends.append(queue)
        if len(sends) == 1:
            routes.dead.set()  # the worker holding it is killed: the task is lost
            return queue
        db.set(key, b"rendered")
        announce(db, Completion(key))
        return queue

    dispatcher = Dispatcher(db, listener, inflight_ttl=60.0, timeout=10.0, routes=routes)
    try:
        started = time.monotonic()
        assert dispatcher.fetch(key, lambda: db.get(key), send) == b"rendered"
        # Rescued within about one re-check, far before the 60 s marker would expire.
        assert time.monotonic() - started < 5
        assert sends == ["interactive.dead@h", "interactive.live@h"]
        assert not db.exists(inflight_key(key))
    finally:
        listener.stop()


def test_a_refused_send_leaves_no_marker(db: redis.Redis, redis_url: str) -> None:
    listener = CompletionListener(lambda: connect(f"{redis_url.rsplit('/', 1)[0]}/{ROUTING_DB}"))
    key = f"tc:test:{uuid.uuid4().hex}"

    def send() -> None:
        raise Overloaded("full")

    try:
        with pytest.raises(Overloaded):
            Dispatcher(db, listener, inflight_ttl=60.0, timeout=5.0).fetch(key, lambda: None, send)
        assert not db.exists(inflight_key(key))
    finally:
        listener.stop()


def shared_queue_stack(
    db: redis.Redis, redis_url: str
) -> tuple[CompletionListener, Router, Callable[[], str]]:
    """Two live nodes, every task sent to the shared queue (no affinity): markers name no
    node until a node adopts them. Returns the listener, the router and a send-route."""
    listener = CompletionListener(lambda: connect(f"{redis_url.rsplit('/', 1)[0]}/{ROUTING_DB}"))
    heartbeat(db, info("a@h"), ttl=30)
    heartbeat(db, info("b@h"), ttl=30)
    r = Router(db, db, max_depth=0, affinity_depth=0)
    return listener, r, lambda: r.route("s")


def test_waiters_send_again_an_unnamed_task_when_a_node_is_lost(
    db: redis.Redis, redis_url: str
) -> None:
    """A node takes a task from the shared queue and dies before naming itself in the
    marker: the task is gone with it, and the marker names nobody. Its waiters send it
    again once they see a node lost, long before the marker or the timeout expire."""
    listener, r, route = shared_queue_stack(db, redis_url)
    key = f"tc:test:{uuid.uuid4().hex}"
    sends: list[str] = []

    def send() -> None:
        sends.append(route())
        if len(sends) == 1:
            db.delete(worker_key("a@h"))  # it took the task and was killed: lost
            return
        db.set(key, b"rendered")
        announce(db, Completion(key))

    dispatcher = Dispatcher(db, listener, inflight_ttl=60.0, timeout=10.0, routes=r)
    try:
        started = time.monotonic()
        assert dispatcher.fetch(key, lambda: db.get(key), send) == b"rendered"
        # The loss is seen at the next live reading (1 s), the waiter acts at its next
        # re-check (1 s).
        assert time.monotonic() - started < 5
        assert sends == [QUEUE_INTERACTIVE, QUEUE_INTERACTIVE]
        assert not db.exists(inflight_key(key))
    finally:
        listener.stop()


def test_an_unnamed_task_is_not_sent_again_without_a_loss(db: redis.Redis, redis_url: str) -> None:
    """Waiting long in the shared queue is no reason to send a task twice; nor is a node
    lost before the waiter began (its task cannot have been taken by that node)."""
    listener, r, route = shared_queue_stack(db, redis_url)
    assert r.losses() == 0
    db.delete(worker_key("b@h"))
    time.sleep(1.1)
    assert r.losses() == 1  # lost and seen before the ask
    key = f"tc:test:{uuid.uuid4().hex}"
    sends: list[str] = []

    def finish_later() -> None:
        time.sleep(3.5)
        db.set(key, b"rendered")
        announce(db, Completion(key))

    def send() -> None:
        sends.append(route())
        threading.Thread(target=finish_later, daemon=True).start()

    dispatcher = Dispatcher(db, listener, inflight_ttl=60.0, timeout=10.0, routes=r)
    try:
        assert dispatcher.fetch(key, lambda: db.get(key), send) == b"rendered"
        assert sends == [QUEUE_INTERACTIVE]
    finally:
        listener.stop()


def test_a_refused_second_send_keeps_waiting_for_the_queued_task(
    db: redis.Redis, redis_url: str
) -> None:
    """A node is lost while the task still waits in a full shared queue: the waiter's
    second send is refused (Overloaded); it puts the marker back and gets the tile from
    the first task rather than a 503."""
    listener, r, route = shared_queue_stack(db, redis_url)
    key = f"tc:test:{uuid.uuid4().hex}"
    sends: list[str] = []
    marker_after_refusal: list[bytes | None] = []

    def finish_later() -> None:
        time.sleep(4.0)
        db.set(key, b"rendered")
        announce(db, Completion(key))

    def send() -> None:
        sends.append(route())
        if len(sends) == 1:
            db.delete(worker_key("a@h"))  # lost, but it did not hold this task
            threading.Thread(target=finish_later, daemon=True).start()
            return
        raise Overloaded("full")

    dispatcher = Dispatcher(db, listener, inflight_ttl=60.0, timeout=10.0, routes=r)
    original_rescue = dispatcher._rescue

    def rescue(*args: object) -> object:
        result = original_rescue(*args)  # type: ignore[arg-type]
        if len(sends) == 2 and not marker_after_refusal:
            marker_after_refusal.append(db.get(inflight_key(key)))
        return result

    dispatcher._rescue = rescue  # type: ignore[method-assign]
    try:
        assert dispatcher.fetch(key, lambda: db.get(key), send) == b"rendered"
        assert len(sends) == 2  # sent again once, refused, not again
        assert marker_after_refusal and marker_after_refusal[0] is not None
    finally:
        listener.stop()
