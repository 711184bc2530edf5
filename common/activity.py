"""Which sources people are viewing: one sorted set in the cache Redis, touched cheaply.

``tc:active`` maps source id -> the wall-clock time (seconds) it was last viewed. The
api touches it on the hit path without adding a round trip: each api process remembers
when it last touched a source (:class:`ActivityMemo`), and only when that is older than
``TOUCH_INTERVAL`` does the tile GET travel in a pipeline with a ZADD -- so nearly every
hit stays a plain GET. The keeper (workers/keeper.py) reads the set to decide whose
tiles to keep; a source viewed within ``Settings.active_window`` is *active*.

The set lives in the cache Redis (so the touch can share the GET's round trip) and has
no TTL: under ``volatile-lru`` Redis never evicts it; the keeper trims stale members.
On a Redis Cluster the set is one key on one node: a touching GET is then a pipeline
split by node, written to both nodes before either answer is read (one round trip's
time); every other hit stays one GET to the tile's node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from tilecast.common.keys import ACTIVE_KEY
from tilecast.common.redisconn import CacheClient

# A source is touched at most once per this many seconds per api process: the window
# is minutes, so seconds of imprecision cost nothing.
TOUCH_INTERVAL = 5.0
# Past this many remembered sources the memo starts afresh rather than growing.
MAX_MEMO_ENTRIES = 100_000


class ActivityMemo:
    """Per-process memory of when each source was last touched in Redis."""

    def __init__(
        self, interval: float = TOUCH_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, source: str) -> bool:
        """True (once per interval per source) when this process should touch ``source``.

        Claiming is atomic across the process's threads, so concurrent hits of one
        source pipeline at most one ZADD between them.
        """
        now = self.clock()
        last = self._last.get(source)
        if last is not None and now - last < self.interval:
            return False
        with self._lock:
            last = self._last.get(source)
            if last is not None and now - last < self.interval:
                return False
            if len(self._last) >= MAX_MEMO_ENTRIES:
                self._last.clear()
            self._last[source] = now
            return True

    def forget(self, source: str) -> None:
        """Make the next ``due(source)`` true (a touch that failed should be retried)."""
        with self._lock:
            self._last.pop(source, None)


def touch(client: CacheClient | redis.RedisCluster, source: str, when: float | None = None) -> None:
    """Record that ``source`` is being viewed (on a client or a pipeline)."""
    client.zadd(ACTIVE_KEY, {source: time.time() if when is None else when})


def get_and_touch(client: CacheClient, key: str, source: str) -> bytes | None:
    """GET ``key`` and touch ``source`` in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.get(key)
    touch(pipe, source)
    value, _added = pipe.execute()
    return value  # type: ignore[no-any-return]


def last_seen(client: CacheClient) -> dict[str, float]:
    """Every recorded source -> the time it was last viewed."""
    pairs = client.zrange(ACTIVE_KEY, 0, -1, withscores=True)
    return {member.decode(): float(score) for member, score in pairs}  # type: ignore[union-attr]


def viewed_since(client: CacheClient, since: float) -> list[str]:
    """The sources viewed at or after ``since`` (wall-clock seconds)."""
    members = client.zrangebyscore(ACTIVE_KEY, since, "+inf")
    return [member.decode() for member in members]  # type: ignore[union-attr]


def active_count(client: CacheClient, window: float, now: float | None = None) -> int:
    """How many sources were viewed within ``window`` seconds."""
    since = (time.time() if now is None else now) - window
    return int(client.zcount(ACTIVE_KEY, since, "+inf"))  # type: ignore[arg-type]


def forget_before(client: CacheClient, before: float) -> int:
    """Drop sources last viewed before ``before`` (their tiles are long gone)."""
    return int(client.zremrangebyscore(ACTIVE_KEY, "-inf", f"({before}"))  # type: ignore[arg-type]
