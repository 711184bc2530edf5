"""Local images as sources: ``POST /sources``, ``GET /sources``, ``DELETE /sources/{id}``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from tilecast.api.handlers import sources
from tilecast.api.openapi import SOURCE_BODY, document
from tilecast.api.parsing import parse_source_body
from tilecast.api.services import services

bp = Blueprint("sources", __name__)


@bp.post("/sources")
@document(body=SOURCE_BODY, responses={201: "registered", 200: "registered already"})
def register() -> tuple[Response, int]:
    """Register ``{"path": ...}`` or ``{"url": ..., options}``: 201 when new, 200 when
    it was registered already."""
    given = request.get_json(silent=True)
    if isinstance(given, dict) and "url" in given and "path" not in given:
        body, created = sources.register_url(services(), given)
        return jsonify(body), 201 if created else 200
    path = parse_source_body(given)
    body, created = sources.register(services(), path)
    return jsonify(body), 201 if created else 200


@bp.delete("/sources/<source_id>")
@document(responses={404: "unknown source"})
def remove(source_id: str) -> Response:
    """Forget a source (404 when unknown); its tiles are never served again."""
    return jsonify(sources.remove(services(), source_id))


@bp.get("/sources")
def list_sources() -> Response:
    return jsonify(sources.list_sources(services()))
