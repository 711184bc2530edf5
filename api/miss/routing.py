"""Where the api sends interactive work: a worker's own queue, the shared queue, or 503.

Only the miss path routes (the hit path never gets here). Per api process the router
keeps two readings, each refreshed on use when stale:

- the live interactive workers (common/workers_live.py), about once a second;
- the depth of the shared queue and of each live worker's own queue: LLEN on the
  broker's lists, at most every ``DEPTH_SECONDS``, counting its own sends in between so
  a burst cannot overfill a queue before the next reading. When a queue looks full the
  reading is renewed first (at most every ``FULL_RECHECK_SECONDS``), so a worker that
  keeps up is not mistaken for a busy one.

A source goes to the worker rendezvous hashing picks (common/routing.py) while that
worker's queue holds fewer than ``affinity_queue_depth`` tasks per process; otherwise,
or with no live worker, to the shared ``interactive`` queue that every interactive
worker consumes; and when that holds ``max_queue_depth`` tasks the miss is refused at
once with :class:`~common.errors.Overloaded` (503, ``Retry-After``) rather than joining
a wait it would lose.

Queue depths are read only from a Redis broker; with another broker there is no
depth bound and no spill-over (affinity still applies).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from tilecast.common.errors import Overloaded
from tilecast.common.routing import broker_client, candidates, is_affinity_queue, pick
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.workers_live import WorkerInfo, read_workers

LIVE_SECONDS = 1.0
DEPTH_SECONDS = 0.25
FULL_RECHECK_SECONDS = 0.02
# Far more sources than one process routes at once; past it the memo starts afresh.
MAX_PICKS = 100_000


class Router:
    def __init__(
        self,
        state: redis.Redis,
        broker: redis.Redis | None,
        *,
        max_depth: int,
        affinity_depth: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.broker = broker
        self.max_depth = max_depth
        self.affinity_depth = affinity_depth
        self.clock = clock
        self._lock = threading.Lock()
        self._live: list[WorkerInfo] = []
        self._live_queues: frozenset[str] = frozenset()
        self._live_at = -float("inf")
        # Every node (interactive or bulk) in the last reading, and how many readings
        # found a node of the one before missing: the dispatcher's cue that work no
        # marker names may have been lost with a node (api/miss/dispatch.py).
        self._nodes: frozenset[str] = frozenset()
        self._losses = 0
        self._picks: dict[str, WorkerInfo] = {}
        self._depths: dict[str, int] = {}
        self._depth_at = -float("inf")

    def route(self, source: str | None) -> str:
        """The queue for one interactive task of ``source``; raises Overloaded. The
        sender returns it, and the dispatcher names it in the in-flight marker."""
        with self._lock:
            now = self.clock()
            live = self._live_workers(now)
            if source and live and self.affinity_depth > 0:
                worker = self._pick(source, live)
                queue = worker.queue or QUEUE_INTERACTIVE
                if self._depth(queue, self.affinity_depth * worker.concurrency, now):
                    return queue
            if not self._depth(QUEUE_INTERACTIVE, self.max_depth, now):
                waiting = self._depths.get(QUEUE_INTERACTIVE, 0)
                raise Overloaded(f"{waiting} interactive tasks are waiting; retry shortly")
            return QUEUE_INTERACTIVE

    def is_gone(self, queue: str) -> bool:
        """Whether ``queue`` is a worker's own queue whose worker is no longer live."""
        if not is_affinity_queue(queue):
            return False
        with self._lock:
            self._live_workers(self.clock())
            return queue not in self._live_queues

    def losses(self) -> int:
        """How many times a reading of the live nodes found one gone since the reading
        before (a counter that only grows, per process)."""
        with self._lock:
            self._live_workers(self.clock())
            return self._losses

    def live_workers(self) -> list[WorkerInfo]:
        with self._lock:
            return list(self._live_workers(self.clock()))

    # --- internals (called with the lock held) ------------------------------------

    def _live_workers(self, now: float) -> list[WorkerInfo]:
        if now - self._live_at >= LIVE_SECONDS:
            workers = read_workers(self.state)
            nodes = frozenset(w.node for w in workers)
            if self._nodes - nodes:
                self._losses += 1
            self._nodes = nodes
            live = candidates(workers)
            if [w.node for w in live] != [w.node for w in self._live]:
                self._picks.clear()
            self._live = live
            self._live_queues = frozenset(w.queue for w in live if w.queue)
            self._live_at = now
        return self._live

    def _pick(self, source: str, live: list[WorkerInfo]) -> WorkerInfo:
        worker = self._picks.get(source)
        if worker is None:
            worker = pick(source, live)
            assert worker is not None  # live is not empty
            if len(self._picks) >= MAX_PICKS:
                self._picks.clear()
            self._picks[source] = worker
        return worker

    def _depth(self, queue: str, bound: int, now: float) -> bool:
        """Whether ``queue`` has room under ``bound`` (0 = unbounded); if so, count
        one more task in it."""
        if bound > 0 and self.broker is not None:
            age = now - self._depth_at
            if age >= DEPTH_SECONDS or (
                self._depths.get(queue, 0) >= bound and age >= FULL_RECHECK_SECONDS
            ):
                self._read_depths(now)
            if self._depths.get(queue, 0) >= bound:
                return False
        self._depths[queue] = self._depths.get(queue, 0) + 1
        return True

    def _read_depths(self, now: float) -> None:
        assert self.broker is not None
        queues = [QUEUE_INTERACTIVE, *sorted(self._live_queues)]
        pipe = self.broker.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        self._depths = {q: int(n) for q, n in zip(queues, pipe.execute(), strict=True)}
        self._depth_at = now


def build_router(settings: Settings, state: redis.Redis) -> Router:
    return Router(
        state,
        broker_client(settings.broker_url, **settings.redis_timeouts),
        max_depth=settings.max_queue_depth,
        affinity_depth=settings.affinity_queue_depth,
    )
