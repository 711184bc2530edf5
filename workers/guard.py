"""A render's deadline: work nobody waits for any more is abandoned, not finished.

An interactive task renders under a :class:`Guard` of its key (workers/tasks.py). The
rendering engine calls :func:`checkpoint` between the pieces of work it does -- every
raw tile it reads or synthesizes (workers/synthesis.py) -- and the guard looks, at most
every ``CHECK_SECONDS``, whether anyone still waits for the key (common/waiting.py):
once every waiter has timed out, it raises :class:`RenderAbandoned` and the pool process
is free for the next task. What was cached on the way (raw tiles of synthesized levels)
stays, so asking again goes on from there. Bulk work runs unguarded: nobody waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import redis
from celery.exceptions import SoftTimeLimitExceeded

from tilecast.common import waiting

log = logging.getLogger(__name__)

# How often a guarded render asks Redis whether anyone still waits (a round trip).
CHECK_SECONDS = 0.25


class RenderAbandoned(Exception):
    """Nobody waits for this render any more."""


class Guard:
    def __init__(
        self,
        state: redis.Redis,
        key: str,
        also: Callable[[], None] | None = None,
        time_limit: float = 0.0,
    ) -> None:
        self.state = state
        self.key = key
        # The soft time limit, enforced here too: Celery's signal may land inside code
        # that catches broad exceptions (a reader retrying), and be lost there.
        self.deadline = time.monotonic() + time_limit if time_limit > 0 else float("inf")
        # Another check at the same pace (the pool share: workers/share.py).
        self.also = also
        self._next = 0.0  # the first checkpoint asks at once

    def check(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise SoftTimeLimitExceeded()
        if now < self._next:
            return
        self._next = now + CHECK_SECONDS
        try:
            waited = waiting.is_waited(self.state, self.key)
        except redis.RedisError as exc:
            # Cannot tell: finish the work rather than drop it on a hiccup.
            log.warning("cannot tell whether anyone waits for %s: %s", self.key, exc)
            return
        if not waited:
            raise RenderAbandoned(self.key)
        if self.also is not None:
            self.also()


_current: ContextVar[Guard | None] = ContextVar("tilecast_render_guard", default=None)


@contextmanager
def guarding(
    state: redis.Redis,
    key: str,
    also: Callable[[], None] | None = None,
    time_limit: float = 0.0,
) -> Iterator[Guard]:
    """Guard the render of ``key`` for the duration of the block."""
    guard = Guard(state, key, also, time_limit)
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)


def checkpoint() -> None:
    """Raise RenderAbandoned when the guarded render has nobody left waiting, or
    SoftTimeLimitExceeded past its time limit; nothing outside a guarded render."""
    guard = _current.get()
    if guard is not None:
        guard.check()
