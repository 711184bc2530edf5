"""Cross-origin access for browser viewers served from another origin (a Girder web
client, a slide viewer page): answered preflights, and ``Access-Control-*`` headers
on every answer to a request that carries an ``Origin``, errors included, so a viewer
can read why a tile was refused.

``TILECAST_CORS_ORIGINS`` is ``*`` (any origin; tokens then travel in the
``Girder-Token`` header or ``token`` query, not in cookies), a comma-separated list of
origins (echoed, with credentials allowed), or empty (no CORS headers at all).
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "Girder-Token, Tilecast-Secret, Content-Type, If-None-Match, Range"
EXPOSED_HEADERS = "ETag, X-Tilecast-Cache, Retry-After, Content-Disposition, Content-Length"
PREFLIGHT_MAX_AGE = "600"


def parse_origins(text: str) -> frozenset[str]:
    return frozenset(part.strip().rstrip("/") for part in text.split(",") if part.strip())


def install(app: Flask, origins_text: str) -> None:
    origins = parse_origins(origins_text)
    if not origins:
        return
    any_origin = "*" in origins

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None:
            return response  # not a browser's cross-origin request: nothing to add
        headers = response.headers
        if any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
        elif origin in origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers.add("Vary", "Origin")
        else:
            return response
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
