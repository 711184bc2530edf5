"""``GET /metrics``: Prometheus text exposition of the caches, renders and queues."""

from __future__ import annotations

from flask import Blueprint, Response

from tilecast.api.handlers import metrics
from tilecast.api.openapi import TEXT, document
from tilecast.api.services import services

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/metrics")
@document(produces=TEXT)
def prometheus() -> Response:
    """Counters summed over every api and worker process, and gauges read now
    (names and meanings: README, Metrics)."""
    response = Response(metrics.prometheus(services()), content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
