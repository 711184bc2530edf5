"""How many requests of one api process may wait for a render at once.

A waiting request holds one of the server's app threads for up to the render timeout.
The servers get ``TILECAST_MAX_WAITING`` app threads on top of ``--threads``
(tilecast/servers.py), and no more than that many requests wait at once: however many
ask cold tiles, ``--threads`` threads stay free for hits and everything else. A request
past the bound is answered 503 ``too_many_waiting`` with ``Retry-After`` at once, before
any work is sent, rather than queueing for a thread in front of the hits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tilecast.common.errors import TooManyWaiting


class WaitSlots:
    """A bound of ``limit`` waiting requests (0 = none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def held(self) -> Iterator[None]:
        """One slot for the body of the ``with``; TooManyWaiting when none is free."""
        with self._lock:
            if self.limit and self._used >= self.limit:
                raise TooManyWaiting(
                    f"{self.limit} requests of this api process already wait for renders; "
                    "ask again shortly"
                )
            self._used += 1
        try:
            yield
        finally:
            with self._lock:
                self._used -= 1
