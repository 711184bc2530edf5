"""Leases: a key in the state Redis that names its holder and expires on its own, so a
holder that dies never keeps it for longer than its TTL.

One implementation for every "only one of us" in tilecast: the leader locks (the cache
keeper, the heartbeat sweeper, the job driver) and the in-flight markers
(common/inflight.py). Taking is ``SET NX PX``; everything a holder does afterwards
checks that it still holds the lease in the same step (a Lua compare-and-...), so a
holder whose lease expired and was taken by another never renews or drops the other's.
"""

from __future__ import annotations

from typing import Any

import redis

# Renew only while we hold it (compare-and-expire).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Renew ours, else take it when free.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""

# Drop only our own (compare-and-delete).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Hand it to a new holder only if it still names the one we read (compare-and-set).
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def ttl_ms(seconds: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis refuses PX 0)."""
    return max(1, int(seconds * 1000))


def take(client: Any, key: str, holder: str, ttl: float) -> Any:
    """Take ``key`` for ``holder`` when nobody holds it: True for the one taker. On a
    pipeline, the command is queued (its answer comes with the pipeline's)."""
    return client.set(key, holder, nx=True, px=ttl_ms(ttl))


def renew(client: redis.Redis, key: str, holder: str, ttl: float) -> bool:
    """Extend ``holder``'s lease on ``key`` to ``ttl``; False when it holds it no more."""
    return bool(client.register_script(_RENEW)(keys=[key], args=[holder, ttl_ms(ttl)]))


def hold(client: redis.Redis, key: str, holder: str, ttl: float) -> bool:
    """Renew ``holder``'s lease, or take it when free: whether ``holder`` holds it now."""
    return bool(client.register_script(_HOLD)(keys=[key], args=[holder, ttl_ms(ttl)]))


def release(client: redis.Redis, key: str, holder: str) -> bool:
    """Drop ``holder``'s lease on ``key``; another holder's is left alone."""
    return bool(client.register_script(_RELEASE)(keys=[key], args=[holder]))


def replace(client: redis.Redis, key: str, expected: bytes | str, holder: str, ttl: float) -> bool:
    """Give ``key`` to ``holder`` for ``ttl`` if it still holds ``expected`` (what the
    caller read): False when someone changed or dropped it meanwhile."""
    script = client.register_script(_REPLACE)
    return bool(script(keys=[key], args=[expected, holder, ttl_ms(ttl)]))


def is_held(client: redis.Redis, key: str) -> bool:
    return bool(client.exists(key))


class Lease:
    """One named lease and its would-be holder (a leader lock)."""

    def __init__(self, client: redis.Redis, key: str, holder: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.holder = holder
        self.ttl = ttl

    def take(self) -> bool:
        return bool(take(self.client, self.key, self.holder, self.ttl))

    def renew(self) -> bool:
        return renew(self.client, self.key, self.holder, self.ttl)

    def hold(self) -> bool:
        return hold(self.client, self.key, self.holder, self.ttl)

    def release(self) -> bool:
        return release(self.client, self.key, self.holder)

    def is_held(self) -> bool:
        """Whether anyone holds it."""
        return is_held(self.client, self.key)
