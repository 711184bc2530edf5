"""Single-flight across every process: in-flight markers and the completion signal.

The first asker of a cold tile claims ``tc:inflight:{key}`` (SET NX with a TTL, so a
dead worker never leaves it behind for long) and sends the task; the worker that
renders it publishes one message on ``tc:done`` when the value is in the cache or the
render failed, then drops the marker. Every api process listens on that one channel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

DONE_CHANNEL = "tc:done"


def inflight_key(key: str) -> str:
    return f"tc:inflight:{key}"


def claim(state: redis.Redis, key: str, owner: str, ttl: float) -> bool:
    """True for the one caller that should dispatch the work for ``key``."""
    return bool(state.set(inflight_key(key), owner, nx=True, px=max(1, int(ttl * 1000))))


def is_inflight(state: redis.Redis, key: str) -> bool:
    return bool(state.exists(inflight_key(key)))


def release(state: redis.Redis, key: str) -> None:
    state.delete(inflight_key(key))


@dataclass(frozen=True)
class Completion:
    """What a waiter learns: the key is ready, or why it never will be this time."""

    key: str
    error: dict[str, Any] | None = None

    def encode(self) -> str:
        return json.dumps({"key": self.key, "error": self.error})

    @classmethod
    def decode(cls, data: bytes | str) -> Completion:
        body = json.loads(data)
        return cls(key=str(body["key"]), error=body.get("error"))


def announce(state: redis.Redis, completion: Completion) -> None:
    """Tell every waiter; the marker goes so that a failed render is retried by the
    next asker instead of being poisoned until the TTL."""
    announce_many(state, [completion])


def announce_many(state: redis.Redis, completions: Sequence[Completion]) -> None:
    """``announce`` for several keys in one round trip."""
    if not completions:
        return
    pipe = state.pipeline(transaction=False)
    for completion in completions:
        pipe.delete(inflight_key(completion.key))
        pipe.publish(DONE_CHANNEL, completion.encode())
    pipe.execute()
