"""Redis connections with the timeouts every tilecast process uses."""

from __future__ import annotations

import redis


def connect(url: str) -> redis.Redis:
    """A client that returns bytes and never hangs forever on a dead server."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        retry_on_timeout=True,
    )
