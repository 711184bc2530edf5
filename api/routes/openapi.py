"""``GET /openapi.json``: the OpenAPI 3 document of this app's routes (api/openapi.py)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from tilecast.api import openapi

bp = Blueprint("openapi", __name__)

_EXTENSION = "tilecast_openapi"


@bp.get("/openapi.json")
@openapi.document(responses={200: "the OpenAPI 3 document"})
def document() -> Response:
    """This document: every route of the HTTP API, generated from the code that serves it."""
    # Routes do not change once the app serves: built on the first request, then kept.
    spec = current_app.extensions.get(_EXTENSION)
    if spec is None:
        spec = current_app.extensions[_EXTENSION] = openapi.build(current_app)
    return jsonify(spec)
