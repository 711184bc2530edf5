"""A worker node's registration and heartbeat, and the sweep of dead nodes' queues.

A thread of the node's main process (started on Celery's ``worker_ready``, after the
pool has forked, so no pool process inherits it) writes the node's
:class:`~common.workers_live.WorkerInfo` with a TTL of ``worker_ttl`` seconds about
once a second. The info counts the tasks the node received, per queue, so that the
share each node gets of a source's work can be watched (tests, ``tilecast stats``).

Interactive nodes also sweep, at most one of them every ``SWEEP_SECONDS`` (a short lock
in the state Redis): registered nodes whose heartbeat expired are marked gone, and the
tasks still waiting in a gone node's own queue are moved to the shared ``interactive``
queue, where the live nodes render them. A gone node's queue is swept for
``GONE_RETENTION_SECONDS`` (an api may still send there until it sees the node gone),
then deleted with its binding. Tasks the dead node had already taken are not
recovered here: their waiters send them again (api/miss/dispatch.py), and the in-flight
markers expire with their TTL.

On a warm shutdown the node unregisters at once (``worker_shutting_down``) and, once
its consumer has returned the tasks it held (``worker_shutdown``), moves what is left
in its own queue to the shared queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

import redis

from tilecast.common import lease
from tilecast.common.keys import SWEEP_LOCK_KEY
from tilecast.common.redisconn import connect
from tilecast.common.routing import affinity_queue, binding_key, broker_client
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_BULK, QUEUE_INTERACTIVE
from tilecast.common.workers_live import (
    ROLE_BULK,
    ROLE_INTERACTIVE,
    WorkerInfo,
    forget,
    gone_nodes,
    heartbeat,
    mark_dead,
    unregister,
)

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
GONE_RETENTION_SECONDS = 120.0
# At most this many tasks are moved per gone queue and sweep.
MOVE_LIMIT = 10_000


def move_queue(broker: redis.Redis, source: str, target: str, limit: int = MOVE_LIMIT) -> int:
    """Move the waiting tasks of ``source`` to the consuming end of ``target``, oldest
    consumed first; how many moved.

    kombu pushes on the left and pops on the right: taking from the left of ``source``
    and pushing on the right of ``target`` keeps their order and puts them ahead of the
    tasks already waiting in ``target`` (they have waited longer)."""
    moved = 0
    while moved < limit and broker.lmove(source, target, "LEFT", "RIGHT") is not None:
        moved += 1
    return moved


def sweep(state: redis.Redis, broker: redis.Redis | None, now: float) -> int:
    """Mark dead nodes gone, move their queued tasks to the shared queue; tasks moved."""
    dead = mark_dead(state, now)
    for node in dead:
        log.warning("worker node %s stopped heartbeating; its queue goes to the others", node)
    moved = 0
    for node, since in gone_nodes(state):
        queue = affinity_queue(node)
        if broker is not None:
            count = move_queue(broker, queue, QUEUE_INTERACTIVE)
            if count:
                log.info("moved %d waiting tasks of %s to %s", count, node, QUEUE_INTERACTIVE)
            moved += count
        if now - since > GONE_RETENTION_SECONDS:
            if broker is not None:
                broker.delete(queue, binding_key(queue))
            forget(state, node)
    return moved


class Heartbeat:
    """One node's registration thread."""

    def __init__(
        self, settings: Settings, node: str, role: str, queue: str | None, concurrency: int
    ) -> None:
        self.state = connect(settings.state_url, **settings.redis_timeouts)
        self.broker = broker_client(settings.broker_url)
        self.node = node
        self.role = role
        self.queue = queue
        self.concurrency = concurrency
        self.ttl = settings.worker_ttl
        self.interval = max(0.05, min(1.0, self.ttl / 3))
        self.started = time.time()
        self._received: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unregistered = False

    def info(self) -> WorkerInfo:
        with self._lock:
            received = dict(self._received)
        return WorkerInfo(
            node=self.node,
            role=self.role,
            queue=self.queue,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            started=self.started,
            received=received,
        )

    def count(self, queue: str) -> None:
        with self._lock:
            self._received[queue] += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tilecast-heartbeat", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to unregister and end (safe in a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop beating and unregister (the others then sweep this node's queue)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._unregister()

    def _unregister(self) -> None:
        with self._lock:
            if self._unregistered:
                return
            self._unregistered = True
        try:
            unregister(self.state, self.node, time.time())
        except redis.exceptions.RedisError as exc:
            log.warning("could not unregister %s: %s", self.node, exc)

    def hand_back(self) -> None:
        """After the consumer stopped: what still waits in the own queue goes to the
        shared queue."""
        if self.queue is None or self.broker is None:
            return
        try:
            moved = move_queue(self.broker, self.queue, QUEUE_INTERACTIVE)
        except redis.exceptions.RedisError as exc:
            log.warning("could not hand back the queue of %s: %s", self.node, exc)
            return
        if moved:
            log.info("handed %d waiting tasks to %s", moved, QUEUE_INTERACTIVE)

    def _run(self) -> None:
        next_sweep = 0.0
        failing = False
        while not self._stopping.is_set():
            try:
                heartbeat(self.state, self.info(), self.ttl)
                if self.role == ROLE_INTERACTIVE and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    self._sweep()
                if failing:
                    log.info("heartbeat of %s restored", self.node)
                failing = False
            except redis.exceptions.RedisError as exc:
                if not failing:
                    log.warning("heartbeat of %s failed: %s", self.node, exc)
                failing = True
            except Exception:
                # A bug here must not silently end the heartbeat (the node would drop out).
                log.exception("heartbeat of %s failed", self.node)
            self._stopping.wait(self.interval)
        self._unregister()

    def _sweep(self) -> None:
        # One sweeper per period across the cluster is enough.
        # The lease is never renewed nor released: it spaces the sweeps out.
        if lease.take(self.state, SWEEP_LOCK_KEY, self.node, SWEEP_SECONDS):
            sweep(self.state, self.broker, time.time())


_current: Heartbeat | None = None


def current() -> Heartbeat | None:
    return _current


def node_role(queues: list[str]) -> str:
    return ROLE_INTERACTIVE if QUEUE_INTERACTIVE in queues else ROLE_BULK


def install() -> None:
    """Register this node while it runs: connect the Celery signals of its main process."""
    from celery.signals import task_received, worker_ready, worker_shutdown, worker_shutting_down

    from tilecast.common.settings import get_settings
    from tilecast.workers.adopt import adopt_received

    def on_ready(sender: Any = None, **_kwargs: Any) -> None:
        global _current
        queues = list(sender.app.amqp.queues.consume_from)
        node = str(sender.hostname)
        own = affinity_queue(node)
        role = node_role(queues)
        if role == ROLE_BULK and QUEUE_BULK not in queues:
            log.warning("node %s consumes neither %s nor %s", node, QUEUE_INTERACTIVE, QUEUE_BULK)
        concurrency = int(getattr(sender.controller, "concurrency", 1) or 1)
        _current = Heartbeat(
            get_settings(), node, role, own if own in queues else None, concurrency
        )
        _current.start()

    def on_received(request: Any = None, **_kwargs: Any) -> None:
        if _current is not None and request is not None:
            info = getattr(request, "delivery_info", None) or {}
            _current.count(str(info.get("routing_key") or "?"))
            adopt_received(_current.state, _current.node, request)

    def on_shutting_down(**_kwargs: Any) -> None:
        # Runs in the signal handler: only ask the thread to stop; it ends within a beat.
        if _current is not None:
            _current.request_stop()

    def on_shutdown(**_kwargs: Any) -> None:
        if _current is not None:
            _current.stop()
            _current.hand_back()

    worker_ready.connect(on_ready, weak=False)
    task_received.connect(on_received, weak=False)
    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
