"""Single-flight dispatch of cache misses, across every api process and host.

For one key: register a waiter, look the value up, claim the in-flight marker (SET NX
with a TTL); only the claimer sends the task; every asker waits for the completion on
``tc:done``, bounded by the render timeout, and re-checks about once a second in case
a completion was missed (listener reconnecting) or the marker expired (worker died) --
then the asker that re-claims the marker sends the work again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from api.completion import CompletionListener, Waiter
from common.errors import RenderTimeout, error_from_payload
from common.inflight import claim, release

T = TypeVar("T")

# The safety net's period: how often a waiter looks at the cache on its own.
RECHECK_SECONDS = 1.0


class Dispatcher:
    def __init__(
        self,
        state: redis.Redis,
        listener: CompletionListener,
        *,
        inflight_ttl: float,
        timeout: float,
    ) -> None:
        self.state = state
        self.listener = listener
        self.inflight_ttl = inflight_ttl
        self.timeout = timeout

    def fetch(self, key: str, lookup: Callable[[], T | None], send: Callable[[], None]) -> T:
        """The value of ``key``: from ``lookup`` when present, else after one render.

        ``lookup`` reads the finished value (None while absent); ``send`` dispatches the
        work that makes it and announces ``key`` on ``tc:done``.
        """
        waiter = self.listener.register(key)
        try:
            value = lookup()
            if value is not None:
                return value
            value = self._claim_and_send(key, lookup, send)
            if value is not None:
                return value
            return self._wait(waiter, lookup, send)
        finally:
            self.listener.unregister(waiter)

    def _claim_and_send(
        self, key: str, lookup: Callable[[], T | None], send: Callable[[], None]
    ) -> T | None:
        if not claim(self.state, key, _owner(), self.inflight_ttl):
            return None
        # Workers write the value before dropping the marker, so a marker we could take
        # may mean the render just finished: look once more before sending a duplicate.
        value = lookup()
        if value is not None:
            release(self.state, key)
            return value
        try:
            send()
        except Exception:
            release(self.state, key)
            raise
        return None

    def _wait(self, waiter: Waiter, lookup: Callable[[], T | None], send: Callable[[], None]) -> T:
        deadline = time.monotonic() + self.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            completion = waiter.wait(min(RECHECK_SECONDS, remaining))
            if completion is not None and completion.error is not None:
                raise error_from_payload(completion.error)
            value = lookup()
            if value is None:
                value = self._claim_and_send(waiter.key, lookup, send)
            if value is not None:
                return value
        raise RenderTimeout(f"the render did not finish within {self.timeout:g} s")


def _owner() -> str:
    """Names the claimer in the marker, for whoever debugs a stuck key."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
