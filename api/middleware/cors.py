"""Cross-origin access for browser viewers served from another origin (a Girder web
client, a slide viewer page): answered preflights, and ``Access-Control-*`` headers
on every answer to a request that carries an ``Origin``, errors included, so a viewer
can read why a tile was refused.

Read routes (tiles, images, protocols, health, metrics, the viewer) follow
``TILECAST_CORS_ORIGINS``: ``*`` (any origin; tokens then travel in the
``Girder-Token`` header or ``token`` query, not in cookies), a comma-separated list of
origins (echoed, with credentials allowed), or empty (no CORS headers at all). With
``*`` every answer carries the headers, Origin or not, so one copy in a shared cache
serves every origin; with a list, every answer says ``Vary: Origin``.

Management routes (sources, jobs, pre-rendering, the Girder plugin's calls, anything
but GET) follow ``TILECAST_CORS_MANAGE_ORIGINS`` alone, empty by default: a page of
another origin can neither read their answers nor, since a browser sends a form's POST
without asking first, make them act: a request whose ``Origin`` is neither the server's
own nor listed there is refused (403) before anything happens.

Which policy a route follows is decided once, at startup, per endpoint: a read route
pays one dictionary lookup, and only management blueprints run the origin check.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, request

from tilecast.api.middleware.access import MANAGE_ENDPOINTS, PLUGIN_BLUEPRINT
from tilecast.common.errors import Forbidden

ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
# Accept: DICOMweb clients name the frames' media type in it, with quotes, which makes
# it a header browsers ask about first.
ALLOWED_HEADERS = "Girder-Token, Tilecast-Secret, Content-Type, If-None-Match, Range, Accept"
EXPOSED_HEADERS = (
    "ETag, X-Tilecast-Cache, X-Tilecast-Generation, X-Request-Id, Retry-After, "
    "Content-Disposition, Content-Length"
)
PREFLIGHT_MAX_AGE = "600"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MANAGE_SETTING = "TILECAST_CORS_MANAGE_ORIGINS"

Policy = Callable[[Response], Response]


def parse_origins(text: str) -> frozenset[str]:
    return frozenset(part.strip().rstrip("/") for part in text.split(",") if part.strip())


def management_endpoints(app: Flask) -> frozenset[str]:
    """Endpoints that change or list what the server holds: the access checks' list,
    the Girder plugin's calls, and any route that takes more than GET."""
    return frozenset(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint in MANAGE_ENDPOINTS
        or rule.endpoint.startswith(PLUGIN_BLUEPRINT)
        or (rule.methods or set()) - READ_METHODS
    )


def _allow(response: Response, value: str) -> Response:
    """The headers after ``Access-Control-Allow-Origin: value``: a preflight's, or
    the exposed headers of an answer."""
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = value
    if request.method == "OPTIONS" and "Origin" in request.headers:
        headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    else:
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def any_origin(response: Response) -> Response:
    # On every answer, Origin or not: the answer is then the same for every origin, and
    # a shared cache (a CDN) may serve one copy to all, without Vary.
    return _allow(response, "*")


def listed_origins(origins: frozenset[str]) -> Policy:
    def policy(response: Response) -> Response:
        # The headers depend on Origin (even its absence): shared caches key on it.
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin not in origins:
            return response
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return _allow(response, origin)

    return policy


def no_cors(response: Response) -> Response:
    return response


def policy_of(origins: frozenset[str]) -> Policy:
    if "*" in origins:
        return any_origin
    return listed_origins(origins) if origins else no_cors


def read_headers(origins_text: str) -> Callable[[str | None], list[tuple[str, str]]]:
    """What the read policy adds to a GET's answer, as a header list for a request with
    this ``Origin`` (or none): the same headers as :func:`policy_of`'s policy, built once,
    for the raw WSGI hit path (api/hitpath/), which answers without a Response."""
    origins = parse_origins(origins_text)
    exposed = ("Access-Control-Expose-Headers", EXPOSED_HEADERS)
    if "*" in origins:
        every = [("Access-Control-Allow-Origin", "*"), exposed]
        return lambda _origin: every
    if not origins:
        return lambda _origin: []
    vary = [("Vary", "Origin")]
    allowed = {
        origin: [
            *vary,
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Origin", origin),
            exposed,
        ]
        for origin in origins
    }
    return lambda origin: allowed.get(origin, vary) if origin is not None else vary


def same_origin(origin: str) -> bool:
    """Whether a page's origin is this server as the request reached it."""
    return urlsplit(origin).netloc == request.host


def install(app: Flask, origins_text: str, manage_origins_text: str = "") -> None:
    """Register the CORS headers and the management routes' origin check; after every
    route, since the policies are chosen per endpoint here."""
    read = policy_of(parse_origins(origins_text))
    manage_origins = parse_origins(manage_origins_text)
    manage_endpoints = management_endpoints(app)
    # Management answers always vary with Origin: a foreign one is refused.
    policies = dict.fromkeys(manage_endpoints, listed_origins(manage_origins))

    def refuse_foreign_origin() -> None:
        origin = request.headers.get("Origin")
        if origin is None or request.method == "OPTIONS":
            return  # not from a browser page, or a preflight (answered without headers)
        if request.endpoint not in manage_endpoints:
            return  # a read route in a blueprint that also manages
        if origin.rstrip("/") in manage_origins or same_origin(origin):
            return
        raise Forbidden(
            f"pages of {origin} may not manage this server: list that origin in {MANAGE_SETTING}"
        )

    for blueprint in sorted({e.rpartition(".")[0] or None for e in manage_endpoints}, key=str):
        app.before_request_funcs.setdefault(blueprint, []).append(refuse_foreign_origin)

    if read is no_cors and not policies:
        return

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        return policies.get(request.endpoint, read)(response)  # type: ignore[arg-type]
