"""Single-flight across every process: in-flight markers and the completion signal.

The first asker of a cold tile claims ``tc:inflight:{key}`` (a lease, common/lease.py:
SET NX with a TTL, so a dead worker never leaves it behind for long) and sends the task;
the worker that renders it publishes one message on ``tc:done`` when the value is in the
cache or the render failed, then drops the marker. Every api process listens on that one
channel.

A marker's value names its owner (whoever claimed it, for whoever debugs a stuck key),
preceded by a worker's own queue when the task is known to be there: ``"{queue} {owner}"``.
The api names the queue it routed the task to (api/miss/dispatch.py); a worker that took the
task from another queue names its own (workers/adopt.py); a waiter that finds the marker
naming a dead worker's queue takes it over and sends the work again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tilecast.common import lease
from tilecast.common.keys import DONE_CHANNEL, inflight_key
from tilecast.common.routing import is_affinity_queue

__all__ = ["DONE_CHANNEL", "inflight_key"]

# Name ``ARGV[1]`` (a queue) in an existing marker, keeping its owner (the part after a
# queue name, if any); a render that finished meanwhile is not marked again.
_NAME_QUEUE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local space = string.find(value, ' ', 1, true)
local owner = value
if space then owner = string.sub(value, space + 1) end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. owner, 'KEEPTTL')
return 1
"""

# Drop the markers that still name ARGV[1] as their whole value (a job batch's own).
_RELEASE_OWNED = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n
"""


def marker_value(owner: str, queue: str | None = None) -> str:
    """``"{queue} {owner}"`` when the task went to a worker's own queue, else the owner."""
    return f"{queue} {owner}" if queue else owner


def marker_queue(value: bytes | str | None) -> str | None:
    """The worker queue a marker names, if any."""
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    head, sep, _owner_part = text.partition(" ")
    return head if sep and is_affinity_queue(head) else None


def claim(state: redis.Redis, key: str, owner: str, ttl: float) -> bool:
    """True for the one caller that should dispatch the work for ``key``."""
    return bool(lease.take(state, inflight_key(key), owner, ttl))


def claim_many(state: redis.Redis, keys: Sequence[str], owner: str, ttl: float) -> list[bool]:
    """Claim each key's marker in one round trip: whether ``owner`` holds it now (it
    took it, or had taken it before: a retried job batch keeps its own markers)."""
    pipe = state.pipeline(transaction=False)
    for key in keys:
        lease.take(pipe, inflight_key(key), owner, ttl)
        pipe.get(inflight_key(key))
    answers = pipe.execute()
    mine = owner.encode()
    return [bool(answers[2 * i]) or answers[2 * i + 1] == mine for i in range(len(keys))]


def is_inflight(state: redis.Redis, key: str) -> bool:
    return bool(state.exists(inflight_key(key)))


def read(state: redis.Redis, key: str) -> bytes | None:
    """The marker's value (None when nothing is in flight)."""
    return state.get(inflight_key(key))  # type: ignore[return-value]


def release(state: redis.Redis, key: str) -> None:
    """Drop the marker whoever holds it (the claimer that sent nothing, or the work is done)."""
    state.delete(inflight_key(key))


def release_owned(state: redis.Redis, keys: Sequence[str], owner: str) -> int:
    """Drop the markers of ``keys`` that ``owner`` still holds; how many."""
    markers = [inflight_key(key) for key in keys]
    return int(state.register_script(_RELEASE_OWNED)(keys=markers, args=[owner]))


def take_over(state: redis.Redis, key: str, seen: bytes | str, owner: str, ttl: float) -> bool:
    """Claim a marker that still holds ``seen`` (what the caller read): False when
    another waiter took it over, or the work finished and someone claimed it afresh."""
    return lease.replace(state, inflight_key(key), seen, owner, ttl)


def put_back(state: redis.Redis, key: str, value: bytes | str, ttl: float) -> None:
    """Set the marker to ``value`` again unless someone claimed it meanwhile."""
    state.set(inflight_key(key), value, nx=True, px=lease.ttl_ms(ttl))


def name_queue(state: redis.Redis, key: str, owner: str, queue: str) -> None:
    """Name the worker queue the claimer sent the task to; if the worker already
    finished and dropped the marker, it stays gone (XX), with the TTL it had."""
    state.set(inflight_key(key), marker_value(owner, queue), xx=True, keepttl=True)


def adopt(state: redis.Redis, key: str, queue: str) -> bool:
    """Name ``queue`` (the worker's own that took the task) in an existing marker,
    keeping its owner; False when there is no marker."""
    return bool(state.register_script(_NAME_QUEUE)(keys=[inflight_key(key)], args=[queue]))


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
    # One DEL for all the markers (the state Redis is one server, never a cluster).
    pipe.delete(*(inflight_key(completion.key) for completion in completions))
    for completion in completions:
        pipe.publish(DONE_CHANNEL, completion.encode())
    pipe.execute()
