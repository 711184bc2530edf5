"""Render latency histograms, shared by every worker process through the state Redis.

A worker process times each render in memory (:class:`LatencyRecorder`) and adds what it
gathered to the hash ``tc:latency`` with the counters it flushes anyway, in the same
pipelined round trip (workers/engine.py ``flush_counters``): per render kind, one HINCRBY
per bucket touched plus the count and the sum (microseconds, so HINCRBY stays integral).
Buckets are stored non-cumulative; :func:`read` returns them cumulative, as Prometheus
histograms want them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from tilecast.common.keys import LATENCY_KEY

# Upper bounds in seconds: a cached-source tile takes milliseconds, a synthesized tile
# or a large region up to seconds, a render near TILECAST_RENDER_TIMEOUT tens of them.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
INF = "+Inf"
COUNT = "count"
SUM_MICROSECONDS = "sum_us"


def bucket_label(seconds: float) -> str:
    """The ``le`` of the first bucket holding ``seconds``."""
    for bound in BUCKETS:
        if seconds <= bound:
            return _bound_text(bound)
    return INF


def _bound_text(bound: float) -> str:
    return repr(float(bound))


def _field(kind: str, name: str) -> str:
    return f"{kind}|{name}"


class LatencyRecorder:
    """Durations observed since the last :meth:`take`, as hash increments."""

    def __init__(self) -> None:
        self._increments: Counter[str] = Counter()
        self._lock = threading.Lock()

    def observe(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._increments[_field(kind, bucket_label(seconds))] += 1
            self._increments[_field(kind, COUNT)] += 1
            self._increments[_field(kind, SUM_MICROSECONDS)] += max(0, round(seconds * 1e6))

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Observe the time the block takes, when it does not raise."""
        start = time.perf_counter()
        yield
        self.observe(kind, time.perf_counter() - start)

    def take(self) -> dict[str, int]:
        with self._lock:
            taken, self._increments = dict(self._increments), Counter()
        return taken


def write(state: redis.Redis, increments: Mapping[str, int]) -> None:
    """HINCRBY each increment on ``state`` (a client or a pipeline)."""
    for name, amount in increments.items():
        if amount:
            state.hincrby(LATENCY_KEY, name, amount)


@dataclass
class Histogram:
    """One kind's histogram: cumulative counts per upper bound (``+Inf`` last)."""

    buckets: dict[str, int] = field(default_factory=dict)
    count: int = 0
    sum_seconds: float = 0.0


def read(state: redis.Redis) -> dict[str, Histogram]:
    """Every kind's histogram, cumulative, sorted by kind."""
    raw: dict[bytes, bytes] = state.hgetall(LATENCY_KEY)  # type: ignore[assignment]
    per_kind: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        kind, _, part = name.decode().rpartition("|")
        if kind:
            per_kind.setdefault(kind, {})[part] = int(value)
    return {kind: _histogram(parts) for kind, parts in sorted(per_kind.items())}


def _histogram(parts: Mapping[str, int]) -> Histogram:
    running = 0
    buckets: dict[str, int] = {}
    for bound in (*(_bound_text(b) for b in BUCKETS), INF):
        running += parts.get(bound, 0)
        buckets[bound] = running
    return Histogram(
        buckets=buckets,
        count=parts.get(COUNT, running),
        sum_seconds=parts.get(SUM_MICROSECONDS, 0) / 1e6,
    )
