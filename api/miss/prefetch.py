"""Prefetch (``TILECAST_PREFETCH=1``): after a viewer's tile miss is dispatched, render
on the ``bulk`` pool the tiles that viewer likely needs next.

Who the viewer is and what it missed lately: api/miss/viewers.py (client address and
User-Agent, no cookie). Where it goes next: api/miss/prefetchplan.py (the band one pan
further along its direction of travel, or the next finer level under its view while it
dives). Its rules:

- **Bulk priority.** The tiles go to the ``bulk`` queue as ``render_tiles`` tasks (one
  per level), which the niced, ``SCHED_IDLE`` bulk node renders on CPU nobody else
  wants: a viewer's own miss goes to ``interactive`` and never waits behind a prefetch.
- **Never a tile someone waits for.** Prefetch claims no in-flight marker: a tile
  cached, in flight (a viewer's miss claimed it) or already queued by a prefetch is
  left out; the worker looks again just before each tile and skips it if it is cached
  or claimed meanwhile (workers/prefetching.py), so a viewer asking for a queued tile
  sends its own interactive render instead of waiting for the bulk queue.
- **A budget.** At most ``TILECAST_PREFETCH_VIEWER_TILES`` tiles per viewer and
  ``TILECAST_PREFETCH_TILES`` tiles for everyone per ``TILECAST_PREFETCH_WINDOW``
  seconds (counted in the state Redis, across api processes); a queued tile not
  rendered within ``TILECAST_PREFETCH_TTL`` seconds is dropped (the viewer moved on).

Prefetch runs on a thread of each api process, off the request's path, and plans on one
in ``PLAN_EVERY`` misses of a viewer. It never fails the miss that triggered it: errors
are logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from werkzeug import Request

from tilecast.api.middleware.ratelimit import Network
from tilecast.api.miss.prefetchplan import plan
from tilecast.api.miss.tasks import Sender
from tilecast.api.miss.viewers import record_miss, viewer_id
from tilecast.common.counters import PREFETCH_TASKS, PREFETCH_TILES, BatchedCounters
from tilecast.common.grid import Grid
from tilecast.common.inflight import inflight_key
from tilecast.common.keys import prefetch_budget_key, prefetch_queued_key
from tilecast.common.redisconn import CacheClient
from tilecast.common.taskprotocol import QUEUE_BULK, TASK_RENDER_TILES, prefetch_payload
from tilecast.common.tiles import TileRequest

log = logging.getLogger(__name__)

GLOBAL = "all"  # the budget of every viewer together
# A viewer's misses plan one in PLAN_EVERY (per api process); the prefetch thread takes at
# most QUEUE_LIMIT waiting misses; viewers whose miss counts this process keeps.
PLAN_EVERY = 4
QUEUE_LIMIT = 1000
MAX_VIEWERS = 100_000


@dataclass(frozen=True)
class Budget:
    """Tiles per ``window`` seconds, per viewer and for everyone; seconds a queued tile
    stays worth rendering."""

    viewer_tiles: int
    tiles: int
    window: float
    ttl: float


class Prefetcher:
    def __init__(
        self,
        cache: CacheClient,
        state: redis.Redis,
        sender: Sender,
        counters: BatchedCounters,
        budget: Budget,
        *,
        proxies: Sequence[Network] = (),
        same_redis: bool = False,
        clock: Callable[[], float] = time.time,
        plan_every: int = PLAN_EVERY,
    ) -> None:
        self.cache = cache
        self.state = state
        self.sender = sender
        self.counters = counters
        self.budget = budget
        self.proxies = tuple(proxies)
        # One server in both roles: the cache and marker checks share a round trip.
        self.same_redis = same_redis
        self.clock = clock
        self.plan_every = plan_every
        self._misses: dict[str, int] = {}
        self._lock = threading.Lock()
        # Prefetch runs on a thread of its own, off the request's path: a viewer's miss is
        # answered as soon as its render is in, whatever the prefetch still does.
        self._jobs: queue.Queue[tuple[TileRequest, int, Mapping[str, Any], str]] = queue.Queue(
            maxsize=QUEUE_LIMIT
        )
        self._thread: threading.Thread | None = None

    def viewer(self, req: Request, request: TileRequest) -> str:
        return viewer_id(req, request, self.proxies)

    def after_miss(
        self, request: TileRequest, generation: int, metadata: Mapping[str, Any], viewer: str
    ) -> None:
        """Hand the miss to the prefetch thread; when it is behind by QUEUE_LIMIT misses,
        this one is left out (prefetch is a bonus, never a backlog)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
                self._thread.start()
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait((request, generation, metadata, viewer))

    def drain(self) -> None:
        """Wait until every miss handed over so far is handled (tests)."""
        self._jobs.join()

    def _run(self) -> None:
        while True:
            request, generation, metadata, viewer = self._jobs.get()
            try:
                self.prefetch(request, generation, metadata, viewer)
            except Exception:  # a prefetch must never fail the tile that triggered it
                log.exception("prefetch after %s failed", request)
            finally:
                self._jobs.task_done()

    def prefetch(
        self, request: TileRequest, generation: int, metadata: Mapping[str, Any], viewer: str
    ) -> list[TileRequest]:
        """Record the miss; every ``plan_every``-th miss of a viewer in this process, plan
        and send what is absent and within budget; what was sent."""
        history = record_miss(self.state, viewer, (request.z, request.x, request.y))
        if not self._plans_now(viewer):
            return []
        wanted = plan(history, Grid.from_metadata(metadata))[: self.budget.viewer_tiles]
        if not wanted:
            return []
        candidates = [dataclasses.replace(request, z=z, x=x, y=y) for z, x, y in wanted]
        keys = [r.key(generation) for r in candidates]
        absent = self._absent(keys)
        fresh = [(r, k) for r, k in zip(candidates, keys, strict=True) if k in absent]
        if not fresh:
            return []
        allowed = self._take_budget(viewer, len(fresh))
        chosen = self._mark_queued(fresh[:allowed], len(fresh) - allowed, viewer)
        self._send(chosen, generation)
        return chosen

    def _plans_now(self, viewer: str) -> bool:
        """Whether this miss plans: the plans of a view's consecutive misses mostly find
        the same tiles, already queued, at a few round trips each."""
        with self._lock:
            if len(self._misses) >= MAX_VIEWERS:
                self._misses.clear()
            count = self._misses.get(viewer, 0)
            self._misses[viewer] = count + 1
        return count % self.plan_every == 0

    def _absent(self, keys: list[str]) -> set[str]:
        """The keys neither cached, nor in flight, nor queued by a prefetch (one round
        trip per Redis)."""
        state_checks = [f(key) for key in keys for f in (inflight_key, prefetch_queued_key)]
        if self.same_redis:
            pipe = self.cache.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            for marker in state_checks:
                pipe.exists(marker)
            found = pipe.execute()
            cached, busy = found[: len(keys)], found[len(keys) :]
        else:
            pipe = self.cache.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            cached = pipe.execute()
            state_pipe = self.state.pipeline(transaction=False)
            for marker in state_checks:
                state_pipe.exists(marker)
            busy = state_pipe.execute()
        return {
            key
            for i, key in enumerate(keys)
            if not cached[i] and not busy[2 * i] and not busy[2 * i + 1]
        }

    def _window(self) -> int:
        return math.floor(self.clock() / self.budget.window)

    def _take_budget(self, viewer: str, count: int) -> int:
        """Take up to ``count`` tiles from the viewer's and everyone's budget of this
        window; how many it may send."""
        window = self._window()
        ttl = max(1, math.ceil(2 * self.budget.window))
        pipe = self.state.pipeline(transaction=False)
        for who in (viewer, GLOBAL):
            key = prefetch_budget_key(who, window)
            pipe.incrby(key, count)
            pipe.expire(key, ttl)
        viewer_total, _, everyone_total, _ = pipe.execute()
        left_viewer = self.budget.viewer_tiles - (int(viewer_total) - count)
        left_everyone = self.budget.tiles - (int(everyone_total) - count)
        return max(0, min(count, left_viewer, left_everyone))

    def _mark_queued(
        self, fresh: list[tuple[TileRequest, str]], unused: int, viewer: str
    ) -> list[TileRequest]:
        """Mark the tiles queued (SET NX: another api process may have queued one a
        moment ago; only the tiles marked here are sent); the budget taken but not used
        is given back in the same round trip."""
        pipe = self.state.pipeline(transaction=False)
        ttl_ms = max(1, math.ceil(self.budget.ttl * 1000))
        for _request, key in fresh:
            pipe.set(prefetch_queued_key(key), viewer, nx=True, px=ttl_ms)
        if unused:
            window = self._window()
            for who in (viewer, GLOBAL):
                pipe.decrby(prefetch_budget_key(who, window), unused)
        answers = pipe.execute()
        return [request for (request, _key), ok in zip(fresh, answers, strict=False) if ok]

    def _send(self, chosen: list[TileRequest], generation: int) -> None:
        """One ``render_tiles`` task per level, on the bulk queue."""
        expires = self.clock() + self.budget.ttl
        levels: dict[int, list[TileRequest]] = {}
        for request in chosen:
            levels.setdefault(request.z, []).append(request)
        for group in levels.values():
            payload = prefetch_payload(group, generation, expires)
            self.sender.send(TASK_RENDER_TILES, payload, queue=QUEUE_BULK)
            self.counters.add(PREFETCH_TASKS)
            self.counters.add(PREFETCH_TILES, len(group))
