"""The one place that turns errors into HTTP responses.

Every error body is ``{"error": code, "message": ..., "parameter": ...}`` (``parameter``
when one is to blame). Anything unexpected is logged with its traceback here and
answered with a bare 500: no traceback, no internal path ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from tilecast.common.errors import (
    RateLimited,
    RenderTimeout,
    ServiceUnavailable,
    TilecastError,
    error_from_payload,
)

log = logging.getLogger(__name__)

# A worker's retry_after is a store's Retry-After (bounded there too): a value outside
# these seconds is no advice a client should follow.
RETRY_AFTER_BOUNDS = (1, 300)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(TilecastError, tilecast_error_response)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(redis.exceptions.RedisError, _redis_error)
    app.register_error_handler(Exception, _unexpected)


def tilecast_error_response(err: TilecastError) -> Response:
    response = _json(err.status, err.to_payload())
    if isinstance(err, ServiceUnavailable | RenderTimeout | RateLimited):
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def worker_error(payload: dict[str, Any]) -> TilecastError:
    """The error a worker reported (common/errors.py's ``task_error_payload``), with the
    ``retry_after`` it carried -- a throttling store's own Retry-After -- bounded."""
    error = error_from_payload(payload)
    wait = payload.get("retry_after")
    if hasattr(error, "retry_after") and type(wait) in (int, float):
        low, high = RETRY_AFTER_BOUNDS
        error.retry_after = min(max(round(wait), low), high)  # type: ignore[attr-defined]
    return error


def _http_exception(err: HTTPException) -> Response:
    """Werkzeug's own 404/405/... as JSON; ``Allow`` survives for 405."""
    status = err.code or 500
    code = "not_found" if status == 404 else (err.name or "error").lower().replace(" ", "_")
    response = _json(status, {"error": code, "message": err.description or err.name})
    for name, value in err.get_headers():
        if name.lower() == "allow":
            response.headers[name] = value
    return response


def _redis_error(err: redis.exceptions.RedisError) -> Response:
    # Redis down, timing out or refusing writes: the client should retry, not see a 500.
    log.warning("redis unavailable: %s", err)
    return tilecast_error_response(ServiceUnavailable("the tile store is unavailable"))


def _unexpected(err: Exception) -> Response:
    log.exception("unexpected error")
    return _json(500, {"error": "internal_error", "message": "internal server error"})


def _json(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    # Errors are about this moment (a render timed out, Redis was down): never cache them.
    response.headers["Cache-Control"] = "no-store"
    return response
