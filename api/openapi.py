"""The OpenAPI 3 document of the HTTP API, generated from the app that serves it.

Every rule of the Flask app's ``url_map`` becomes an operation per method (HEAD and
OPTIONS, which Flask adds to every route, are left out): its path with ``<name>``
written ``{name}``, path parameters typed by their converters, summary and description
from the view function's docstring, and the ``{"error", "message", "parameter"}`` error
body for 4XX and 5XX. A route nobody described still appears, from its rule and
docstring alone. What a rule cannot say -- query parameters, a request body, the
statuses worth naming, the media types -- a view declares beside itself with
:func:`document`. Its query parameters are the declarations the parsers read
(common/query.py and the modules it gathers from), written out with the bounds and
defaults this server's settings configure: the document states what is enforced.

Access is documented as the server enforces it (api/middleware/access.py,
api/middleware/signed.py): in
``girder`` mode item and management routes take a Girder token (header, query or
cookie) and may answer 401/403; in ``signed`` mode they need a signed URL's four query
parameters; the Girder plugin's routes always need its shared secret. Every route may
answer 414 (api/middleware/limits.py), those taking a body 413, and all but the probes 429 when
rate limiting is on (api/middleware/ratelimit.py).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, TypeVar

from flask import Flask

from tilecast.api.middleware.access import MANAGE_ENDPOINTS, PLUGIN_BLUEPRINT
from tilecast.api.middleware.ratelimit import UNLIMITED_ENDPOINTS
from tilecast.api.services import EXTENSION
from tilecast.common.encoding import CONTENT_TYPES
from tilecast.common.params import (
    BOOLEAN,
    FALSE_WORDS,
    INTEGER,
    JSON_TEXT,
    NUMBER,
    TRUE_WORDS,
    Param,
)
from tilecast.common.query import GIRDER_CREDENTIALS, PLUGIN_SECRET, SIGNED_GRANT
from tilecast.common.settings import Settings

OPENAPI_VERSION = "3.0.3"
MAX_SUMMARY = 100
_ATTRIBUTE = "_tilecast_openapi"
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
# <name>, <converter:name> or <converter(args):name> in a Werkzeug rule.
_RULE_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable machine-readable code"},
        "message": {"type": "string"},
        "parameter": {"type": "string", "description": "the parameter to blame, if one is"},
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# Media types of the answers a view may declare with ``produces``.
JSON = ("application/json",)
IMAGES = tuple(CONTENT_TYPES.values())
TEXT = ("text/plain",)
HTML = ("text/html",)

F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=512)
def path_template(rule: str) -> str:
    """``/item/<item_id>/tiles/zxy/<int:z>`` -> ``/item/{item_id}/tiles/zxy/{z}``;
    remembered, as every answer is counted under its route's template
    (api/middleware/observe.py)."""
    return _RULE_VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule)


# --- what views declare ----------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """What a view adds to what its rule says."""

    query: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # a JSON request body's schema
    responses: Mapping[int, str] = field(default_factory=dict)
    produces: tuple[str, ...] = JSON
    secret: bool = False  # needs the Girder plugin's shared secret


def document(
    *,
    query: Iterable[Param] = (),
    body: Mapping[str, Any] | None = None,
    responses: Mapping[int, str] | None = None,
    produces: tuple[str, ...] = JSON,
    secret: bool = False,
) -> Callable[[F], F]:
    """Attach a :class:`Doc` to a view function (under its route decorator)."""
    doc = Doc(tuple(query), body, dict(responses or {}), produces, secret)

    def attach(view: F) -> F:
        setattr(view, _ATTRIBUTE, doc)
        return view

    return attach


def doc_of(view: Callable[..., Any]) -> Doc:
    return getattr(view, _ATTRIBUTE, None) or Doc()


IMAGE_ANSWERS = {304: "not modified (If-None-Match matched the strong ETag)"}
SOURCE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "a local path, or a URL with its options (docs/REMOTE.md)",
    "properties": {
        "path": {"type": "string", "description": "under TILECAST_SOURCE_ROOTS"},
        "url": {"type": "string", "description": "under TILECAST_REMOTE_ALLOW"},
        "endpoint_url": {"type": "string", "description": "in TILECAST_REMOTE_ENDPOINTS"},
        "anonymous": {"type": "boolean"},
        "requester_pays": {"type": "boolean"},
        "region": {"type": "string"},
    },
}
PRECACHE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "the query parameters' names, as JSON members (they win over the query)",
}
GIRDER_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {"levels": {"type": "string"}, "thumbnail": {"type": "boolean"}},
}


# --- the document ----------------------------------------------------------------------------


def build(app: Flask, title: str = "tilecast") -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``, under the app's settings."""
    settings: Settings = app.extensions[EXTENSION].settings
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        item = paths.setdefault(path_template(rule.rule), {})
        methods = sorted((rule.methods or set()) - _IGNORED_METHODS)
        for method in methods:
            operation = _operation(rule.rule, rule.endpoint, view, method, settings)
            name = re.sub(r"\W", "_", rule.endpoint)
            if len(methods) > 1:  # one view, several methods: one id each
                name = f"{name}_{method.lower()}"
            operation["operationId"] = _unique(name, operation_ids)
            item[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": _version(),
            "description": "A distributed tile server for very large images.",
        },
        "paths": paths,
        "components": _components(),
    }


def _operation(
    rule: str, endpoint: str, view: Callable[..., Any], method: str, settings: Settings
) -> dict[str, Any]:
    doc = doc_of(view)
    summary, description = _docstring(view, endpoint)
    blueprint = endpoint.rpartition(".")[0] or "app"
    takes_body = doc.body is not None and method in ("POST", "PUT", "PATCH")
    security = _security(rule, endpoint, doc, settings.access_mode)
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [blueprint],
        "parameters": [
            *_path_parameters(rule),
            *(parameter(p, settings) for p in doc.query),
        ],
        "responses": _responses(doc, _refusals(endpoint, security, takes_body, settings)),
    }
    if description:
        operation["description"] = description
    if takes_body:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": dict(doc.body or {})}},
        }
    if security:
        operation["security"] = security
    return operation


def parameter(param: Param, settings: Settings) -> dict[str, Any]:
    """The OpenAPI parameter object of a declaration, with the bound and default that
    ``settings`` configure."""
    param = param.resolved(settings)
    body: dict[str, Any] = {
        "name": param.name,
        "in": param.location,
        "description": _markdown(param.doc),
        "schema": schema(param),
    }
    return body


def schema(param: Param) -> dict[str, Any]:
    """The JSON schema of a (resolved) declaration's values."""
    found: dict[str, Any]
    if param.kind in (INTEGER, NUMBER):
        found = {"type": param.kind}
        if param.low is not None:
            found["minimum"] = param.low
        if param.high is not None:
            found["maximum"] = param.high
    elif param.kind == BOOLEAN:
        # Spelled as large_image's girder plugin takes them, in a query string.
        found = {"type": "string", "enum": [*TRUE_WORDS, *FALSE_WORDS]}
        param = replace(param, default=TRUE_WORDS[0] if param.default else FALSE_WORDS[0])
    else:
        found = {"type": "string"}
        if param.choices:
            found["enum"] = list(param.choices)
        if param.kind == JSON_TEXT:
            found["format"] = "json"
    if param.default not in (None, ""):
        found["default"] = param.default
    return found


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    found = []
    for match in _RULE_VARIABLE.finditer(rule):
        converter = match.group("converter") or "default"
        schema = dict(_CONVERTER_SCHEMAS.get(converter, {"type": "string"}))
        if converter == "any" and match.group("args"):
            schema["enum"] = [v.strip().strip("'\"") for v in match.group("args").split(",")]
        name = match.group("name")
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    return found


# --- access, and the refusals every route may answer -----------------------------------------

# Security scheme names: one per place a credential travels.
_SECRET = "tilecastSecret"
_GIRDER = {
    "header": "girderToken",
    "query": "girderTokenQuery",
    "cookie": "girderTokenCookie",
}
_SIGNED = {p.name: "signed" + p.name.capitalize() for p in SIGNED_GRANT}


def _security(rule: str, endpoint: str, doc: Doc, mode: str) -> list[dict[str, list[str]]]:
    """What the access check of ``mode`` asks of this route (empty: nothing)."""
    if doc.secret or endpoint.startswith(PLUGIN_BLUEPRINT):
        return [{_SECRET: []}]
    manage = endpoint in MANAGE_ENDPOINTS
    if not manage and "<item_id>" not in rule and ":item_id>" not in rule:
        return []  # the service routes stay open in every mode
    tokens = [{_GIRDER[p.location]: []} for p in GIRDER_CREDENTIALS]
    if mode == "girder":
        # Items: a token that may read it, or none for a public item. Management: the
        # plugin's secret or a Girder administrator's token.
        return [{_SECRET: []}, *tokens] if manage else [{}, *tokens]
    if mode == "signed":
        return [{name: [] for name in _SIGNED.values()}]  # all four together
    return []


def _refusals(
    endpoint: str, security: list[dict[str, list[str]]], takes_body: bool, settings: Settings
) -> dict[int, str]:
    refusals = {414: "the path or query string is longer than this server takes"}
    if security:
        refusals[401] = "missing or invalid credentials"
        if security != [{_SECRET: []}]:
            refusals[403] = "the credentials may not do this"
    if takes_body:
        refusals[413] = "the body is longer than TILECAST_MAX_BODY_BYTES"
    if settings.rate_limit > 0 and endpoint not in UNLIMITED_ENDPOINTS:
        refusals[429] = "more requests than TILECAST_RATE_LIMIT allows: retry after a while"
    return refusals


def _responses(doc: Doc, refusals: Mapping[int, str]) -> dict[str, Any]:
    described = {**refusals, **doc.responses}
    if not any(200 <= status < 300 for status in described):
        described[200] = "success"
    responses: dict[str, Any] = {}
    for status, text in sorted(described.items()):
        responses[str(status)] = _response(status, _markdown(text), doc.produces)
    responses.setdefault("4XX", {"$ref": "#/components/responses/Error"})
    responses.setdefault("5XX", {"$ref": "#/components/responses/Error"})
    return responses


def _response(status: int, description: str, produces: tuple[str, ...]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
    }
    if status >= 400:
        response["content"] = {"application/json": {"schema": ERROR_REF}}
        if status in (429, 503, 504):
            response["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    elif status != 304:
        response["content"] = {media: {"schema": _schema_of(media)} for media in produces}
    return response


def _schema_of(media: str) -> dict[str, Any]:
    if media == "application/json":
        return {}
    if media.startswith("image/"):
        return {"type": "string", "format": "binary"}
    return {"type": "string"}


def _components() -> dict[str, Any]:
    schemes: dict[str, Any] = {_SECRET: _scheme(PLUGIN_SECRET)}
    for param in GIRDER_CREDENTIALS:
        schemes[_GIRDER[param.location]] = _scheme(param)
    for param in SIGNED_GRANT:
        schemes[_SIGNED[param.name]] = _scheme(
            param.described(
                f"{param.doc}; a signed URL carries all four (or the path form "
                "/signed/{keyid}/{expires}/{signature}/...)"
            )
        )
    return {
        "schemas": {"Error": ERROR_SCHEMA},
        "responses": {
            "Error": {
                "description": "an error: 400 a bad parameter (named), 401/403 access, 404 "
                "unknown, 413/414 too long a body or URL, 415 a file of no format tilecast "
                "reads, 422 an image of a known format that cannot be read, 429 rate "
                "limited, 503/504 retry later (Retry-After)",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": ERROR_REF}},
            }
        },
        "headers": {
            "RequestId": {
                "description": "the request's id (the client's X-Request-Id when it sent one); "
                "workers log it with the renders the request caused",
                "schema": {"type": "string"},
            },
            "RetryAfter": {"description": "seconds to wait", "schema": {"type": "integer"}},
        },
        "securitySchemes": schemes,
    }


def _scheme(param: Param) -> dict[str, Any]:
    return {
        "type": "apiKey",
        "in": param.location,
        "name": param.name,
        "description": _markdown(param.doc),
    }


def _docstring(view: Callable[..., Any], endpoint: str) -> tuple[str, str]:
    """``(summary, description)``: the first sentence, and the whole docstring."""
    text = _markdown(inspect.getdoc(view) or "")
    if not text:
        name = endpoint.rpartition(".")[2].replace("_", " ")
        return name[:1].upper() + name[1:], ""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    summary = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0].rstrip(".")
    if len(summary) > MAX_SUMMARY:
        summary = summary[:MAX_SUMMARY].rsplit(" ", 1)[0] + " ..."
    return summary, text


def _markdown(text: str) -> str:
    """reStructuredText's ``literal`` as Markdown's `literal`."""
    return text.replace("``", "`")


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


def _version() -> str:
    try:
        return metadata.version("tilecast")
    except metadata.PackageNotFoundError:
        return "0"
