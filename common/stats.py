"""Counters kept in the state Redis, shared by every process (one hash, HINCRBY)."""

from __future__ import annotations

import redis

STATS_KEY = "tc:stats"

TILES_RENDERED = "tiles_rendered"
THUMBNAILS_RENDERED = "thumbnails_rendered"
RAW_TILES_READ = "raw_tiles_read"
RAW_TILES_SYNTHESIZED = "raw_tiles_synthesized"
RENDER_ERRORS = "render_errors"


def incr(state: redis.Redis, name: str, amount: int = 1) -> None:
    state.hincrby(STATS_KEY, name, amount)


def read(state: redis.Redis) -> dict[str, int]:
    raw = state.hgetall(STATS_KEY)
    return {k.decode(): int(v) for k, v in raw.items()}  # type: ignore[union-attr]
