"""Single-flight dispatch of cache misses, across every api process and host.

For one key: register a waiter, look the value up, take one of the process's wait slots
(:class:`WaitSlots`: past ``TILECAST_MAX_WAITING`` waiting requests a 503 at once, before
anything is sent), claim the in-flight marker (SET NX with a TTL); only the claimer sends
the task; every asker waits for the completion on ``tc:done``, bounded by the render
timeout. Waiting costs no CPU and no round trip: the process's one sweep a second
(api/miss/sweep.py) nudges a waiter when its value is there or its marker is gone -- a
completion was missed (listener reconnecting, a failed announcement) or the marker
expired (worker died) -- and then the asker that re-claims the marker sends the work
again.

A task routed to one worker's own queue (source affinity, api/miss/routing.py) names that
queue in its marker. A waiter that finds the marker naming the queue of a worker that
is no longer live takes the marker over (compare-and-set) and sends the work again --
routed among the live workers -- so a killed worker's tiles are rendered by the others
within seconds instead of waiting out the marker's TTL. A task sent to the shared queue
has a marker naming no worker until the worker that takes it names itself
(workers/adopt.py); the broker has already handed the message over by then (BRPOP, then
its ``unacked`` hash), so a worker killed in between takes the task with it unnamed. Its
waiters therefore also send the work again, once per loss, when a marker naming no
worker outlives the loss of a worker node that this process noticed after they began
waiting: the task was either lost or is still queued (then the duplicate finds the value
cached). A send refused by backpressure (``Overloaded``) or a broker error drops the
marker again, so nothing is left claimed for work that was never sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import redis

from tilecast.api.errors import worker_error
from tilecast.api.miss.completion import CompletionListener, Waiter
from tilecast.api.miss.sweep import SWEEP_SECONDS, Sweeper
from tilecast.api.miss.waitslots import WaitSlots
from tilecast.common import inflight, waiting
from tilecast.common.errors import Overloaded, RenderTimeout
from tilecast.common.routing import is_affinity_queue

T = TypeVar("T")
# Dispatches the work that makes a key; the queue it went to (None when it cannot say:
# the marker then names no worker queue).
Send = Callable[[], str | None]
log = logging.getLogger(__name__)

# How often a waiter wakes on its own: to look for itself only while the sweep is not
# healthy (api/miss/sweep.py), else just to see that it is.
RECHECK_SECONDS = SWEEP_SECONDS


class Routes(Protocol):
    """What the dispatcher asks the router (api/miss/routing.py)."""

    def is_gone(self, queue: str) -> bool: ...

    def losses(self) -> int: ...


class NoRoutes:
    """No affinity: no queue is ever gone, no node is lost."""

    def is_gone(self, queue: str) -> bool:
        return False

    def losses(self) -> int:
        return 0


class Dispatcher:
    def __init__(
        self,
        state: redis.Redis,
        listener: CompletionListener,
        *,
        inflight_ttl: float,
        timeout: float,
        routes: Routes | None = None,
        max_waiting: int = 0,
        present: Callable[[Sequence[str]], list[bool]] | None = None,
    ) -> None:
        self.state = state
        self.listener = listener
        self.inflight_ttl = inflight_ttl
        self.timeout = timeout
        self.routes = routes or NoRoutes()
        # Requests of this process that may wait at once (0 = no bound).
        self.slots = WaitSlots(max_waiting)
        # ``present``: which keys' values are in the cache, for the sweep.
        self.sweeper = Sweeper(
            state, listener, self.routes.is_gone, self.routes.losses, present=present
        )

    def fetch(self, key: str, lookup: Callable[[], T | None], send: Send) -> T:
        """The value of ``key``: from ``lookup`` when present, else after one render.

        ``lookup`` reads the finished value (None while absent); ``send`` dispatches the
        work that makes it and announces ``key`` on ``tc:done``, and returns the queue
        it went to (a worker's own queue is named in the marker).
        """
        waiter = self.listener.register(key)
        try:
            value = lookup()
            if value is not None:
                return value
            # A request past the bound is refused before it sends anything.
            with self.slots.held():
                self.sweeper.ensure_started()
                # Node losses noticed from now on may have taken this key's task unnamed.
                losses = self.routes.losses()
                # Before the work is sent: a render stops once nobody waits
                # (common/waiting.py).
                waiting.join(self.state, key, self.timeout + RECHECK_SECONDS)
                _claimed, value = self._claim_and_send(key, lookup, send)
                if value is not None:
                    return value
                return self._wait(waiter, lookup, send, losses)
        finally:
            self.listener.unregister(waiter)

    def _claim_and_send(
        self, key: str, lookup: Callable[[], T | None], send: Send
    ) -> tuple[bool, T | None]:
        """Claim the marker and send; (whether we claimed it, the value if present)."""
        owner = _owner()
        if not inflight.claim(self.state, key, owner, self.inflight_ttl):
            return False, None
        return True, self._send_claimed(key, owner, lookup, send)

    def _send_claimed(
        self, key: str, owner: str, lookup: Callable[[], T | None], send: Send
    ) -> T | None:
        # Workers write the value before dropping the marker, so a marker we could take
        # may mean the render just finished: look once more before sending a duplicate.
        value = lookup()
        if value is not None:
            inflight.release(self.state, key)
            return value
        try:
            queue = send()
        except Exception:
            inflight.release(self.state, key)
            raise
        if queue is not None and is_affinity_queue(queue):
            inflight.name_queue(self.state, key, owner, queue)
        return None

    def _rescue(
        self,
        key: str,
        lookup: Callable[[], T | None],
        send: Send,
        losses: int,
    ) -> tuple[T | None, int]:
        """Send the work again if the marker names the queue of a dead worker, or names
        none while a node was lost since ``losses`` (the count when the waiter last
        looked); (the value if present, the loss count now seen)."""
        current = inflight.read(self.state, key)
        if current is None:
            return None, losses
        queue = inflight.marker_queue(current)
        if queue is not None:
            if not self.routes.is_gone(queue):
                return None, losses
            reason = f"worker queue {queue} is gone"
        else:
            now = self.routes.losses()
            if now == losses:
                return None, losses
            losses = now
            reason = "a worker node was lost and the marker names none"
        owner = _owner()
        if not inflight.take_over(self.state, key, current, owner, self.inflight_ttl):
            return None, losses  # someone else took it over, or it finished
        log.warning("%s; sending %s again", reason, key)
        try:
            return self._send_claimed(key, owner, lookup, send), losses
        except Overloaded:
            if queue is not None:
                raise  # the only task was lost with its worker: say so
            # A full queue most likely still holds the task: put the marker back (unless
            # someone claimed it meanwhile) and wait for that task, not for a 503.
            inflight.put_back(self.state, key, current, self.inflight_ttl)
            log.warning("sending %s again was refused (queue full); waiting on", key)
            return None, losses

    def _wait(
        self,
        waiter: Waiter,
        lookup: Callable[[], T | None],
        send: Send,
        losses: int,
    ) -> T:
        deadline = time.monotonic() + self.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            woken, completion = waiter.wait(min(RECHECK_SECONDS, remaining))
            if not woken and self.sweeper.healthy() and time.monotonic() < deadline:
                continue  # nothing changed: the sweep would have nudged (at the deadline, look)
            if completion is not None and completion.error is not None:
                raise worker_error(completion.error)
            value = lookup()
            if value is None:
                claimed, value = self._claim_and_send(waiter.key, lookup, send)
                if not claimed and completion is None:
                    value, losses = self._rescue(waiter.key, lookup, send, losses)
            if value is not None:
                return value
        raise RenderTimeout(f"the render did not finish within {self.timeout:g} s")


def _owner() -> str:
    """Names the claimer in the marker, for whoever debugs a stuck key."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
