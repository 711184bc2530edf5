"""The safety net of every request of a process that waits for a render: one round trip a
second, however many wait.

A waiter is woken by its completion on ``tc:done`` (api/miss/completion.py). A completion
can be missed (the listener was reconnecting) and a worker can die with its task (its
marker expires, or names the queue of a worker that is gone). Rather than every waiter
looking at the cache and the marker once a second -- three round trips per waiting
request, which hundreds of waits turn into thousands a second on the threads that
answer hits -- one thread per process reads the in-flight markers of every waited key
in one MGET, and whether their values are in the cache in one pipeline (a worker whose
announcement failed leaves its marker behind), and nudges only the waiters for which a
look could change something (:func:`worth_a_look`); the others stay asleep. Waiters
look for themselves again, once a second, while the sweep is not
:meth:`Sweeper.healthy` (its thread died, or Redis failed it), so a broken sweep costs
round trips, never a lost render.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis

from tilecast.api.miss.completion import CompletionListener
from tilecast.common import inflight
from tilecast.common.keys import inflight_key

log = logging.getLogger(__name__)

# The sweep's period: how long a missed completion or a dead worker may go unseen.
SWEEP_SECONDS = 1.0
# Sweeps missed before waiters stop trusting it and look for themselves.
MISSED_SWEEPS = 3
# Markers read per round trip.
CHUNK = 1000
# Seconds with no waiter before the thread ends (started again by the next waiter).
IDLE_SECONDS = 30.0


def worth_a_look(
    present: bool, marker: bytes | None, is_gone: Callable[[str], bool], lost_since_last: bool
) -> bool:
    """Whether a waiter whose key's value is ``present`` in the cache and whose in-flight
    marker holds ``marker`` should look at both itself: the value is there, the marker is
    gone (the render finished, failed or expired: look at the value, claim it again),
    names the queue of a worker that is gone (send it again), or names no queue while a
    worker node was lost since the last sweep (the task may have been lost with it;
    api/miss/dispatch.py decides)."""
    if present or marker is None:
        return True
    queue = inflight.marker_queue(marker)
    if queue is not None:
        return is_gone(queue)
    return lost_since_last


class Sweeper:
    """Started lazily by the first waiter of a process; ends after ``IDLE_SECONDS`` with
    no waiter, so an idle process holds no thread."""

    def __init__(
        self,
        state: redis.Redis,
        listener: CompletionListener,
        is_gone: Callable[[str], bool],
        losses: Callable[[], int],
        present: Callable[[Sequence[str]], list[bool]] | None = None,
        period: float = SWEEP_SECONDS,
    ) -> None:
        self.state = state
        self.listener = listener
        # Which keys' values are in the cache (a waited key that names no cached value,
        # such as a registration's, is never present: its marker and completion tell).
        self.present = present or (lambda keys: [False] * len(keys))
        self.is_gone = is_gone
        self.losses = losses
        self.period = period
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._swept_at = 0.0  # monotonic time of the last sweep that read every marker
        self._started_at = 0.0
        self._losses_seen = 0

    def ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._started_at = time.monotonic()
                # Before the first waiter takes its own count (api/miss/dispatch.py): a
                # loss it could care about is then a change from this one.
                self._losses_seen = self.losses()
                self._thread = threading.Thread(
                    target=self._run, name="tilecast-wait-sweep", daemon=True
                )
                self._thread.start()

    def healthy(self) -> bool:
        """Whether a sweep read every marker lately (or the thread has just started)."""
        now = time.monotonic()
        alive = self._thread is not None and self._thread.is_alive()
        recent = max(self._swept_at, self._started_at)
        return alive and now - recent < MISSED_SWEEPS * self.period

    def sweep_once(self) -> int:
        """Read the markers of every waited key and nudge the waiters worth a look; how
        many keys were nudged."""
        keys = self.listener.waited_keys()
        losses = self.losses()
        lost = losses != self._losses_seen
        self._losses_seen = losses
        nudged = 0
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            markers = self._markers(chunk)
            present = self.present(chunk)
            for key, there, marker in zip(chunk, present, markers, strict=True):
                if worth_a_look(there, marker, self.is_gone, lost):
                    self.listener.nudge(key)
                    nudged += 1
        self._swept_at = time.monotonic()
        return nudged

    def _markers(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.state.mget([inflight_key(k) for k in keys])  # type: ignore[return-value]

    def _run(self) -> None:
        idle_since = time.monotonic()
        failing = False
        while True:
            time.sleep(self.period)
            if self.listener.waited_keys():
                idle_since = time.monotonic()
                try:
                    self.sweep_once()
                    failing = False
                except Exception as exc:
                    # Redis failed the sweep: the waiters look for themselves until it
                    # works again. Said once per outage, not once a second.
                    if not failing:
                        log.warning("the wait sweep failed (%s); waiters look for themselves", exc)
                    failing = True
                continue
            if time.monotonic() - idle_since >= IDLE_SECONDS:
                with self._lock:
                    if self.listener.waited_keys():
                        continue  # a waiter came meanwhile: swept next time round
                    self._thread = None
                return
