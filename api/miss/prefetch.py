"""Prefetch (``TILECAST_PREFETCH=1``): from the tiles a viewer asks for, render on the
``bulk`` pool the tiles it likely needs next.

Who the viewer is and what it asked lately: api/miss/viewers.py (client address and
User-Agent, no cookie). Both its misses and its hits count (the hit path hands each hit
over too): a viewer whose pans all hit because prefetch was right keeps being followed;
planned from misses alone, prefetch stopped as soon as it worked and the next pan missed
again. Where it goes next: api/miss/prefetchplan.py (the band one pan further along its
direction of travel, or the next finer level under its view while it dives). Its rules:

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

Prefetch runs on a thread of each api process, off the request's path: a request only
puts a few words on its queue. The thread takes what is queued at once, records each
viewer's tiles in one round trip and plans at most once per viewer of that batch, on one
in ``PLAN_EVERY`` tiles it asked. It never fails the request that fed it: errors are
logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from werkzeug import Request

from tilecast.api.middleware.ratelimit import Network
from tilecast.api.miss.prefetchplan import TileId, plan
from tilecast.api.miss.tasks import Sender
from tilecast.api.miss.viewers import record_asked, viewer_id
from tilecast.common.counters import PREFETCH_TASKS, PREFETCH_TILES, BatchedCounters
from tilecast.common.encoding import EncodingOptions
from tilecast.common.grid import Grid
from tilecast.common.inflight import inflight_key
from tilecast.common.keys import prefetch_budget_key, prefetch_queued_key
from tilecast.common.redisconn import CacheClient
from tilecast.common.taskprotocol import QUEUE_BULK, TASK_RENDER_TILES, prefetch_payload
from tilecast.common.tiles import TileRequest

log = logging.getLogger(__name__)

GLOBAL = "all"  # the budget of every viewer together
# A viewer's asked tiles plan one in PLAN_EVERY (per api process); the prefetch thread
# holds at most QUEUE_LIMIT waiting tiles, handles up to BATCH at once and looks for more
# every POLL_SECONDS; viewers whose counts this process keeps; images whose grid it
# remembers.
PLAN_EVERY = 4
QUEUE_LIMIT = 4000
BATCH = 512
POLL_SECONDS = 0.02
MAX_VIEWERS = 100_000
MAX_GRIDS = 1024


@dataclass(frozen=True)
class Budget:
    """Tiles per ``window`` seconds, per viewer and for everyone; seconds a queued tile
    stays worth rendering."""

    viewer_tiles: int
    tiles: int
    window: float
    ttl: float


@dataclass(frozen=True)
class Asked:
    """A tile ``viewer`` asked for under ``generation``; ``metadata`` when a miss had it
    at hand (a hit's image is described from the registry when it plans)."""

    viewer: str
    request: TileRequest
    generation: int
    metadata: Mapping[str, Any] | None = None


class RawHit(NamedTuple):
    """A hit path's hit as the hit path sees it: the viewer is named on the prefetch
    thread, not on the request's."""

    source: str
    frame: int
    z: int
    x: int
    y: int
    generation: int
    remote_addr: str
    forwarded: str | None
    user_agent: str


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
        describe: Callable[[str], Mapping[str, Any]] | None = None,
        encoding: EncodingOptions | None = None,
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
        # Hits name their image only: its metadata comes from ``describe`` (the
        # registry), and a hit path's tile is in the default ``encoding``.
        self.describe = describe
        self.encoding = encoding or EncodingOptions()
        self._asked: dict[str, int] = {}
        self._grids: dict[tuple[str, int], Grid] = {}
        self._lock = threading.Lock()
        # Prefetch runs on a thread of its own, off the request's path: a request appends
        # to a deque (no lock, no wake-up; the thread takes it within POLL_SECONDS), and when
        # the thread is behind by QUEUE_LIMIT tiles the oldest go (prefetch is a bonus,
        # never a backlog; the newest tiles say most about where a viewer goes).
        self._queue: deque[Asked | RawHit] = deque(maxlen=QUEUE_LIMIT)
        self._handling = False
        self._viewers: dict[tuple[str, str | None, str, str, int], str] = {}
        self._thread: threading.Thread | None = None

    def viewer(self, req: Request, request: TileRequest) -> str:
        return viewer_id(req, request, self.proxies)

    def after_miss(
        self, request: TileRequest, generation: int, metadata: Mapping[str, Any], viewer: str
    ) -> None:
        """Hand a dispatched miss to the prefetch thread."""
        self._hand_over(Asked(viewer, request, generation, metadata))

    def after_hit(self, request: TileRequest, generation: int, viewer: str) -> None:
        """Hand a hit answered through Flask to the prefetch thread."""
        self._hand_over(Asked(viewer, request, generation))

    def after_raw_hit(self, hit: RawHit) -> None:
        """Hand a hit path's hit to the prefetch thread."""
        self._hand_over(hit)

    def _hand_over(self, item: Asked | RawHit) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start_thread()
        self._queue.append(item)

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
                self._thread.start()

    def drain(self) -> None:
        """Wait until every tile handed over so far is handled (tests)."""
        while self._queue or self._handling:
            time.sleep(0.002)

    def _run(self) -> None:
        while True:
            # A batch per POLL_SECONDS at most, unless BATCH tiles wait: a batch costs a
            # few round trips whatever its size, so a busy process pays them per batch,
            # not per tile.
            if len(self._queue) < BATCH:
                time.sleep(POLL_SECONDS)
            if not self._queue:
                continue
            self._handling = True
            batch: list[Asked | RawHit] = []
            with contextlib.suppress(IndexError):
                while len(batch) < BATCH:
                    batch.append(self._queue.popleft())
            try:
                self.handle(batch)
            except Exception:  # a prefetch must never fail the tile that fed it
                log.exception("prefetch after %d tiles failed", len(batch))
            finally:
                self._handling = False

    def _viewer_of(self, hit: RawHit) -> str:
        """A hit path's viewer, named as viewer() names a Flask request's (remembered:
        a viewer's hits come from one address and User-Agent)."""
        identity = (hit.remote_addr, hit.forwarded, hit.user_agent, hit.source, hit.frame)
        found = self._viewers.get(identity)
        if found is None:
            environ = {"REMOTE_ADDR": hit.remote_addr, "HTTP_USER_AGENT": hit.user_agent}
            if hit.forwarded is not None:
                environ["HTTP_X_FORWARDED_FOR"] = hit.forwarded
            found = viewer_id(Request(environ), self._request_of(hit), self.proxies)
            if len(self._viewers) >= MAX_VIEWERS:
                self._viewers.clear()
            self._viewers[identity] = found
        return found

    def _request_of(self, hit: RawHit) -> TileRequest:
        """A hit path's tile: plain, in the default encoding."""
        return TileRequest(hit.source, hit.z, hit.x, hit.y, hit.frame, encoding=self.encoding)

    def _asked_of(self, item: Asked | RawHit, viewer: str) -> Asked:
        if isinstance(item, Asked):
            return item
        return Asked(viewer, self._request_of(item), item.generation)

    def handle(self, batch: Sequence[Asked | RawHit]) -> list[TileRequest]:
        """Record what each viewer asked (one round trip per viewer); for each viewer
        whose count passed a ``plan_every``-th tile in this process, plan once from its
        latest tile and send what is absent and within budget; what was sent."""
        tiles: dict[str, list[TileId]] = {}
        latest: dict[str, Asked | RawHit] = {}
        for item in batch:
            if isinstance(item, Asked):
                viewer, tile = item.viewer, (item.request.z, item.request.x, item.request.y)
            else:
                viewer, tile = self._viewer_of(item), (item.z, item.x, item.y)
            tiles.setdefault(viewer, []).append(tile)
            latest[viewer] = item
        sent: list[TileRequest] = []
        for viewer, asked in tiles.items():
            history = record_asked(self.state, viewer, asked)
            if self._plans_now(viewer, len(asked)):
                sent += self._plan(history, self._asked_of(latest[viewer], viewer))
        return sent

    def prefetch(
        self, request: TileRequest, generation: int, metadata: Mapping[str, Any], viewer: str
    ) -> list[TileRequest]:
        """One miss, handled at once (tests); what was sent."""
        return self.handle([Asked(viewer, request, generation, metadata)])

    def _plan(self, history: list[TileId], latest: Asked) -> list[TileRequest]:
        request, generation, viewer = latest.request, latest.generation, latest.viewer
        grid = self._grid(request.source, generation, latest.metadata)
        wanted = plan(history, grid)[: self.budget.viewer_tiles]
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

    def _plans_now(self, viewer: str, asked: int) -> bool:
        """Whether ``asked`` more tiles of the viewer include a ``plan_every``-th one
        (its first, then one in ``plan_every``): the plans of a view's consecutive tiles
        mostly find the same tiles, already queued, at a few round trips each."""
        with self._lock:
            if len(self._asked) >= MAX_VIEWERS:
                self._asked.clear()
            count = self._asked.get(viewer, 0)
            self._asked[viewer] = count + asked
        return count % self.plan_every == 0 or count % self.plan_every + asked > self.plan_every

    def _grid(self, source: str, generation: int, metadata: Mapping[str, Any] | None) -> Grid:
        """The image's tile grid: from the miss's metadata, or remembered, or described."""
        found = self._grids.get((source, generation))
        if found is not None:
            return found
        if metadata is None:
            if self.describe is None:
                raise LookupError(f"no metadata to plan {source} by")
            metadata = self.describe(source)
        grid = Grid.from_metadata(metadata)
        if len(self._grids) >= MAX_GRIDS:
            self._grids.clear()
        self._grids[(source, generation)] = grid
        return grid

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
