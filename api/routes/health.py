"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from api.services import services
from common.errors import ServiceUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing else is checked."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the cache and state Redis answer."""
    svc = services()
    try:
        svc.cache.client.ping()
        svc.state.ping()
    except redis.exceptions.RedisError:
        raise ServiceUnavailable("redis is unreachable") from None
    return jsonify({"status": "ready"})
