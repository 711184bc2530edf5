"""The calls of tilecast's Girder plugin (deploy/girder-plugin/), each authenticated by
the shared secret (``Tilecast-Secret`` header; 401 otherwise):
``POST /girder/items/{id}`` after an upload or a replaced file, ``DELETE
/girder/items/{id}`` after a deletion."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from tilecast.api.handlers import girder
from tilecast.api.middleware.access import require_secret
from tilecast.api.openapi import GIRDER_BODY, document
from tilecast.api.services import services
from tilecast.common.errors import BadRequest

bp = Blueprint("girder", __name__)


@bp.post("/girder/items/<girder_item>")
@document(body=GIRDER_BODY, responses={201: "registered", 200: "described again"}, secret=True)
def register(girder_item: str) -> tuple[Response, int]:
    """JSON ``{"levels": "0-2", "thumbnail": true, ...}``: 201 when the item is new, 200
    when it was known (it is described again, with a new generation)."""
    svc = services()
    require_secret(request, svc.settings.girder_secret)
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", parameter="body")
    result, created = girder.register_item(svc, girder_item, body)
    return jsonify(result), 201 if created else 200


@bp.delete("/girder/items/<girder_item>")
@document(responses={200: "forgotten (also when unknown)"}, secret=True)
def forget(girder_item: str) -> Response:
    svc = services()
    require_secret(request, svc.settings.girder_secret)
    return jsonify(girder.forget_item(svc, girder_item))
