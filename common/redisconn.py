"""Redis connections with the timeouts every tilecast process uses."""

from __future__ import annotations

import redis

# redis-py 8 caps a client's pool at 100 connections unless told otherwise, and then fails
# with "Too many connections": an api process with more threads than that (every thread
# waiting on a render holds one) must not turn its own thread count into 503s.
MAX_CONNECTIONS = 4096


def connect(url: str) -> redis.Redis:
    """A client that returns bytes and never hangs forever on a dead server."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        retry_on_timeout=True,
        max_connections=MAX_CONNECTIONS,
    )
