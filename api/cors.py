"""Cross-origin access for browser viewers served from another origin (a Girder web
client, a slide viewer page): answered preflights, and ``Access-Control-*`` headers
on every answer to a request that carries an ``Origin``, errors included, so a viewer
can read why a tile was refused.

``TILECAST_CORS_ORIGINS`` is ``*`` (any origin; tokens then travel in the
``Girder-Token`` header or ``token`` query, not in cookies), a comma-separated list of
origins (echoed, with credentials allowed), or empty (no CORS headers at all). With
``*`` every answer carries the headers, Origin or not, so one copy in a shared cache
serves every origin; with a list, every answer says ``Vary: Origin``.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "Girder-Token, Tilecast-Secret, Content-Type, If-None-Match, Range"
EXPOSED_HEADERS = (
    "ETag, X-Tilecast-Cache, X-Tilecast-Generation, X-Request-Id, Retry-After, "
    "Content-Disposition, Content-Length"
)
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
        headers = response.headers
        if any_origin:
            # On every answer, Origin or not: the answer is then the same for every
            # origin, and a shared cache (a CDN) may serve one copy to all, without Vary.
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            # The headers depend on Origin (even its absence): shared caches key on it.
            response.vary.add("Origin")
            if origin in origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Allow-Credentials"] = "true"
        if "Access-Control-Allow-Origin" not in headers:
            return response
        if request.method == "OPTIONS" and origin is not None:
            headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
