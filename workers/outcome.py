"""What a failed render tells its waiters: one mapping from exceptions to completions.

A :class:`TilecastError` travels with its own payload (its HTTP status and message, and
the ``retry_after`` it carries: a throttling store's Retry-After); a Redis outage becomes
a 503; anything else is logged with its traceback here and reaches the client as
RenderFailed, without internal paths or details.
"""

from __future__ import annotations

import logging

import redis

from tilecast.common.errors import (
    RenderFailed,
    ServiceUnavailable,
    TilecastError,
    task_error_payload,
)
from tilecast.common.inflight import Completion

log = logging.getLogger(__name__)


def failure(key: str, exc: Exception) -> Completion:
    """The completion announcing that ``key`` could not be rendered because of ``exc``."""
    if isinstance(exc, TilecastError):
        log.info("%s failed: %s: %s", key, exc.code, exc.message)
        return Completion(key, error=task_error_payload(exc))
    if isinstance(exc, redis.RedisError):
        log.warning("%s failed: Redis is unavailable: %s", key, exc)
        error = ServiceUnavailable("the cache is unavailable; retry later")
        return Completion(key, error=error.to_payload())
    log.error("%s failed", key, exc_info=exc)
    return Completion(key, error=RenderFailed("the render failed").to_payload())
