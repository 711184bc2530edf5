"""Neighbour prefetch (``TILECAST_PREFETCH=1``): after a tile miss is dispatched, render
the tiles a viewer is likely to ask next on the ``bulk`` pool.

For a miss at (z, x, y) that is the 8 neighbours at level z and the 4 tiles of level
z + 1 (finer) under it: one ``tilecast.render_tiles`` task per level. Tiles already
cached or in flight are left out (one pipelined round trip of EXISTS), and so are
tiles this process asked to prefetch within ``MEMO_SECONDS`` -- a pan misses many
adjacent tiles whose neighbourhoods overlap. The batch task itself skips tiles cached
meanwhile. Prefetch never fails the miss that triggered it: errors are logged.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from tilecast.api.miss.tasks import Sender
from tilecast.common.counters import PREFETCH_TASKS, PREFETCH_TILES, BatchedCounters
from tilecast.common.grid import Grid
from tilecast.common.inflight import inflight_key
from tilecast.common.redisconn import CacheClient
from tilecast.common.taskprotocol import QUEUE_BULK, TASK_RENDER_TILES, render_tiles_payload
from tilecast.common.tiles import TileRequest

log = logging.getLogger(__name__)

MEMO_SECONDS = 30.0
MAX_MEMO_ENTRIES = 200_000


def neighbours(request: TileRequest, metadata: Mapping[str, Any]) -> list[list[TileRequest]]:
    """The tiles around ``request`` at its level and under it one level finer, grouped
    by level (each group is one render_tiles task); tiles outside the image are left out."""
    grid = Grid.from_metadata(metadata)
    z, x, y = request.z, request.x, request.y
    same = [
        dataclasses.replace(request, x=x + dx, y=y + dy)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dx or dy) and grid.contains(z, x + dx, y + dy)
    ]
    finer = [dataclasses.replace(request, z=z + 1, x=cx, y=cy) for cx, cy in grid.children(z, x, y)]
    return [group for group in (same, finer) if group]


class Prefetcher:
    def __init__(
        self,
        cache: CacheClient,
        state: redis.Redis,
        sender: Sender,
        counters: BatchedCounters,
        *,
        same_redis: bool = False,
        memo_seconds: float = MEMO_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.state = state
        self.sender = sender
        # One server in both roles: the cache and marker checks share a round trip.
        self.same_redis = same_redis
        self.counters = counters
        self.memo_seconds = memo_seconds
        self.clock = clock
        self._sent: dict[str, float] = {}
        self._lock = threading.Lock()

    def after_miss(
        self, request: TileRequest, generation: int, metadata: Mapping[str, Any]
    ) -> None:
        try:
            self._prefetch(request, generation, metadata)
        except Exception:  # a prefetch must never fail the tile that triggered it
            log.exception("prefetch around %s failed", request)

    def _prefetch(self, request: TileRequest, generation: int, metadata: Mapping[str, Any]) -> None:
        groups = [self._fresh(group, generation) for group in neighbours(request, metadata)]
        candidates = [(r, r.key(generation)) for group in groups for r in group]
        if not candidates:
            return
        absent = self._absent([key for _r, key in candidates])
        for group in groups:
            wanted = [r for r in group if r.key(generation) in absent]
            if not wanted:
                continue
            self.sender.send(
                TASK_RENDER_TILES, render_tiles_payload(wanted, generation), queue=QUEUE_BULK
            )
            self.counters.add(PREFETCH_TASKS)
            self.counters.add(PREFETCH_TILES, len(wanted))

    def _fresh(self, group: list[TileRequest], generation: int) -> list[TileRequest]:
        """The tiles of ``group`` not prefetched within the memo time; they are
        remembered now (claimed by this call)."""
        now = self.clock()
        fresh: list[TileRequest] = []
        with self._lock:
            if len(self._sent) >= MAX_MEMO_ENTRIES:
                self._sent = {k: t for k, t in self._sent.items() if t > now}
            for request in group:
                key = request.key(generation)
                if self._sent.get(key, 0.0) > now:
                    continue
                self._sent[key] = now + self.memo_seconds
                fresh.append(request)
        return fresh

    def _absent(self, keys: list[str]) -> set[str]:
        """The keys neither cached nor in flight (one round trip per Redis)."""
        same_redis = self.same_redis
        pipe = self.cache.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
            if same_redis:
                pipe.exists(inflight_key(key))
        found = pipe.execute()
        if same_redis:
            cached = found[0::2]
            busy = found[1::2]
        else:
            cached = found
            state_pipe = self.state.pipeline(transaction=False)
            for key in keys:
                state_pipe.exists(inflight_key(key))
            busy = state_pipe.execute()
        return {key for key, c, b in zip(keys, cached, busy, strict=True) if not c and not b}
