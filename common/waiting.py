"""Whether anyone still waits for a render: one key per rendered key, living as long as
its last waiter's deadline.

Every request that waits for ``key`` (api/miss/dispatch.py) extends ``tc:waiting:{key}`` to
its own deadline (now + ``TILECAST_RENDER_TIMEOUT``) before the work is sent; a render
that finds the key gone has nobody left to answer -- every waiter timed out, and a
client that disconnected counts until its own timeout, since a WSGI handler cannot see
the disconnect -- and stops (workers/guard.py). Bulk work never looks: nobody waits for
it by design. The key lives in the state Redis with the in-flight markers.
"""

from __future__ import annotations

import redis

from tilecast.common.keys import waiting_key

# Only ever lengthen: a waiter with a shorter timeout must not cut an earlier one's.
_JOIN = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


def join(state: redis.Redis, key: str, seconds: float) -> None:
    """Record that someone waits for ``key`` for ``seconds`` more."""
    state.eval(_JOIN, 1, waiting_key(key), max(1, int(seconds * 1000)))


def is_waited(state: redis.Redis, key: str) -> bool:
    return bool(state.exists(waiting_key(key)))
