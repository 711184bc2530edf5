"""Pre-rendering jobs: ``POST /item/{id}/tiles/precache``, ``GET /jobs``,
``GET /jobs/{id}``, ``DELETE /jobs/{id}``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from tilecast.api.handlers import precache_jobs
from tilecast.api.openapi import PRECACHE_BODY, document
from tilecast.api.services import services
from tilecast.common import query
from tilecast.common.errors import BadRequest

bp = Blueprint("jobs", __name__)


def _arguments() -> dict[str, Any]:
    """The query string, with a JSON body's members over it."""
    args: dict[str, Any] = dict(request.args.items())
    if request.content_length or request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object", parameter="body")
        args.update(body)
    return args


@bp.post("/item/<item_id>/tiles/precache")
@document(
    query=query.PRECACHE,
    body=PRECACHE_BODY,
    responses={201: "a new job (Location: /jobs/{id})", 200: "the running equal job"},
)
def precache(item_id: str) -> tuple[Response, int]:
    """Start pre-rendering ``levels`` (a range like ``0-6`` or a list), ``region``,
    ``frames``, ``style`` and ``encoding`` of an image: 201 with the new job, or 200
    with the running job an equal request started."""
    body, created = precache_jobs.submit(services(), item_id, _arguments())
    response = jsonify(body)
    response.headers["Location"] = url_for("jobs.job", job_id=body["id"])
    return response, 201 if created else 200


@bp.get("/jobs")
@document(query=query.JOBS_LIST)
def list_jobs() -> Response:
    limit = query.LIMIT.integer(request.args)
    assert limit is not None
    return jsonify(precache_jobs.list_jobs(services(), limit))


@bp.get("/jobs/<job_id>")
@document(responses={404: "unknown job"})
def job(job_id: str) -> Response:
    """State, done/total/failed/skipped, tiles per second, ETA, times, error samples."""
    return jsonify(precache_jobs.describe(services(), job_id))


@bp.delete("/jobs/<job_id>")
@document(responses={404: "unknown job"})
def cancel(job_id: str) -> Response:
    """Cancel a running job; cancelling a job that already ended changes nothing."""
    return jsonify(precache_jobs.cancel(services(), job_id))
