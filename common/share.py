"""One source's share of the interactive pool, while other sources' renders wait.

Without it, a flood of one source's cold tiles (a viewer zooming through a pathological
file, a script) fills every pool process, and another source's single tile waits behind
all of them in the queue until it times out.

The mechanism, in the state Redis (one Lua script per step, timed by the server's clock):

- the api notes every interactive task it sends in ``tc:share:pending:{source}`` (task
  id -> time; entries older than the task's expiry are dropped), and the source in
  ``tc:share:sources`` (:func:`note_pending`);
- a task starting on an interactive node moves itself from its source's pending set to
  ``tc:share:running:{source}`` (:func:`admit`) -- unless its source already runs as many
  tasks as its share of the pool allows *and* another source has work pending: then it
  is not started but deferred, sent again to the tail of the shared ``interactive``
  queue (workers/share.py), behind the other sources' work. A source alone on the pool
  is never deferred, however many processes it holds: a single user on an idle pool is
  not slowed. The share is ``TILECAST_SOURCE_SHARE`` of the live interactive processes,
  at least one.
- a task that runs beyond its source's share (started while the pool was its source's
  alone) gives its process up as soon as another source's work is pending: at its next
  checkpoint (workers/guard.py, at most every 0.25 s) it stops and is deferred the same
  way (:func:`should_yield`); what it cached on the way is kept, so it goes on from there;
- a task leaves the running set when it ends (:func:`finish`), or when its pool process
  is killed (workers/limits.py); an entry older than ``running_ttl`` (the hard time
  limit and a margin) is dropped, so a lost one cannot hold a slot for ever.

The scripts touch keys of other sources than the ones they name, which is fine on the
state Redis: it is one server, never a cluster (common/settings.py).
"""

from __future__ import annotations

import redis

from tilecast.common.keys import SHARE_PENDING_PREFIX
from tilecast.common.keys import SHARE_SOURCES_KEY as SOURCES_KEY
from tilecast.common.keys import share_pending_key as pending_key
from tilecast.common.keys import share_running_key as running_key

_NOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

# Returns from the script with 0 when another source than ARGV[5] has work pending
# (sources whose pending set holds only stale entries are dropped on the way).
_OTHERS_WAIT = """
local function others_wait(now, pending_ttl, own, prefix, sources)
  for _, other in ipairs(redis.call('SMEMBERS', sources)) do
    if other ~= own then
      local pending = prefix .. other
      redis.call('ZREMRANGEBYSCORE', pending, '-inf', now - pending_ttl)
      if redis.call('ZCARD', pending) > 0 then
        return true
      end
      redis.call('SREM', sources, other)
    end
  end
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: running set, pending set of this source, the set of sources.
# ARGV: task id, limit, running ttl ms, pending ttl ms, source, pending key prefix.
_ADMIT = (
    _OTHERS_WAIT
    + """
local running_ttl = tonumber(ARGV[3])
local pending_ttl = tonumber(ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - running_ttl)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2])
    and others_wait(now, pending_ttl, ARGV[5], ARGV[6], KEYS[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], running_ttl)
return 1
"""
)

# A running task beyond its source's share (by start time: the oldest ``limit`` keep
# running) while another source waits gives its place up: removed from the running set.
# KEYS: running set, the set of sources. ARGV: task id, limit, pending ttl ms, source,
# pending key prefix.
_YIELD = (
    _OTHERS_WAIT
    + """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank or rank < tonumber(ARGV[2]) then
  return 0
end
if others_wait(now, tonumber(ARGV[3]), ARGV[4], ARGV[5], KEYS[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def note_pending(state: redis.Redis, source: str, task_id: str, ttl: float) -> None:
    """The api sent ``task_id`` of ``source``; it may wait in a queue ``ttl`` seconds."""
    state.eval(_NOTE, 2, pending_key(source), SOURCES_KEY, task_id, _ms(ttl), source)


def forget_pending(state: redis.Redis, source: str, task_id: str) -> None:
    """A send that failed: nothing waits."""
    state.zrem(pending_key(source), task_id)


def admit(
    state: redis.Redis,
    source: str,
    task_id: str,
    limit: int,
    *,
    running_ttl: float,
    pending_ttl: float,
) -> bool:
    """True when ``task_id`` of ``source`` may start now (it then counts as running);
    False when it should be deferred behind other sources' pending work."""
    return bool(
        state.eval(
            _ADMIT,
            3,
            running_key(source),
            pending_key(source),
            SOURCES_KEY,
            task_id,
            max(1, limit),
            _ms(running_ttl),
            _ms(pending_ttl),
            source,
            SHARE_PENDING_PREFIX,
        )
    )


def should_yield(
    state: redis.Redis, source: str, task_id: str, limit: int, *, pending_ttl: float
) -> bool:
    """True when running ``task_id`` is past its source's share while another source
    waits: it should stop and be deferred (it no longer counts as running)."""
    return bool(
        state.eval(
            _YIELD,
            2,
            running_key(source),
            SOURCES_KEY,
            task_id,
            max(1, limit),
            _ms(pending_ttl),
            source,
            SHARE_PENDING_PREFIX,
        )
    )


def finish(state: redis.Redis, source: str, task_id: str) -> None:
    state.zrem(running_key(source), task_id)


def share_limit(share: float, pool_processes: int) -> int:
    """How many processes one source may hold while others wait: at least one."""
    return max(1, int(share * pool_processes))
