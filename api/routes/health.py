"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from tilecast.api.handlers.health import readiness
from tilecast.api.openapi import document
from tilecast.api.services import services
from tilecast.common.errors import ServiceUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@document(responses={200: "the process answers"})
def healthz() -> Response:
    """Liveness: the process answers; nothing else is checked."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@document(
    responses={
        200: "ready: ``checks`` lists what was checked",
        503: "not ready (with ``Retry-After``): ``failed`` names the checks that failed",
    }
)
def readyz() -> Response:
    """Readiness: the cache and state Redis answer, at least one interactive worker node
    is live (heartbeated within ``TILECAST_WORKER_TTL``), and the broker answers when it
    is not the state Redis."""
    checks, failed = readiness(services())
    if not failed:
        response = jsonify({"status": "ready", "checks": checks})
    else:
        error = ServiceUnavailable(f"not ready: {', '.join(failed)} failed")
        body = {**error.to_payload(), "status": "unready", "checks": checks, "failed": failed}
        response = jsonify(body)
        response.status_code = error.status
        response.headers["Retry-After"] = str(error.retry_after)
    response.headers["Cache-Control"] = "no-store"
    return response
