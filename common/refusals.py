"""Renders stopped by their time limit, remembered for a while so that the next asker
is answered at once (503 ``too_costly`` with ``Retry-After``) instead of sending the
same hopeless work again and waiting out its limit.

A worker writes ``tc:refused:{key}`` (the error's JSON payload, TTL
``TILECAST_TOO_COSTLY_TTL``) when a render of ``key`` passes its soft time limit, or its
node does when the hard limit killed the pool process (workers/limits.py); the api reads
it on a miss, before dispatching (api/miss/answers.py). It lives in the state Redis,
next to the in-flight markers.
"""

from __future__ import annotations

import json

import redis

from tilecast.common.errors import TilecastError, TooCostly, error_from_payload
from tilecast.common.keys import refused_key


def refuse(state: redis.Redis, key: str, error: TilecastError, ttl: int) -> None:
    """Answer ``key`` with ``error`` for ``ttl`` seconds (0 = do not remember)."""
    if ttl > 0:
        state.set(refused_key(key), json.dumps(error.to_payload()), ex=ttl)


def check_refused(state: redis.Redis, key: str) -> None:
    """Raise the remembered error of ``key``, if any, with the seconds it has left as
    its ``retry_after``."""
    pipe = state.pipeline(transaction=False)
    pipe.get(refused_key(key))
    pipe.ttl(refused_key(key))
    raw, ttl = pipe.execute()
    if raw is None:
        return
    try:
        error = error_from_payload(json.loads(raw))
    except ValueError:
        error = TooCostly("this render passed its time limit a moment ago")
    if isinstance(ttl, int) and ttl > 0:
        error.retry_after = ttl  # type: ignore[attr-defined]
    raise error
