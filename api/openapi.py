"""The OpenAPI 3 document of the HTTP API, generated from the app that serves it.

Every rule of the Flask app's ``url_map`` becomes an operation per method (HEAD and
OPTIONS, which Flask adds to every route, are left out): its path with ``<name>``
written ``{name}``, path parameters typed by their converters, summary and description
from the view function's docstring, and the ``{"error", "message", "parameter"}`` error
body for 4XX and 5XX. A route nobody described still appears, from its rule and
docstring alone. What a rule cannot say -- query parameters, a request body, the
statuses worth naming, the media types -- a view declares beside itself with
:func:`document`; the parameters come from the catalogue below, built from the parsing
code's own names, defaults and bounds (common/encoding.py, api/parsing.py,
common/regions.py), so the document and the parser agree.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from flask import Flask

from tilecast.common.encoding import (
    CONTENT_TYPES,
    DEFAULT_AVIF_QUALITY,
    DEFAULT_JPEG_QUALITY,
    DEFAULT_WEBP_QUALITY,
    FORMAT_ALIASES,
    QUERY_PARAMETERS,
    TIFF_COMPRESSIONS,
)
from tilecast.common.regions import UNITS

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
    remembered, as every answer is counted under its route's template (api/observe.py)."""
    return _RULE_VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule)


# --- what views declare ----------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One query (or header) parameter."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: str = "query"
    required: bool = False

    def to_openapi(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "description": self.description,
            "schema": dict(self.schema),
        }
        if self.required:
            body["required"] = True
        return body


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


# --- the parameter catalogue, from the parsing code ---------------------------------------


def _int(low: int, high: int | None = None, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    if default is not None:
        schema["default"] = default
    return schema


BOOLEAN_TEXT = {"type": "string", "enum": ["true", "false", "on", "off", "yes", "no", "1", "0"]}
NUMBER = {"type": "number"}

ENCODING: tuple[Param, ...] = (
    Param(
        "encoding",
        "output format (default JPEG)",
        {"type": "string", "enum": [*CONTENT_TYPES, *FORMAT_ALIASES], "default": "JPEG"},
    ),
    Param(
        "jpegQuality",
        "JPEG quality (default TILECAST_JPEG_QUALITY)",
        _int(1, 100, DEFAULT_JPEG_QUALITY),
    ),
    Param("jpegSubsampling", "0, 1, 2 = 4:4:4, 4:2:2, 4:2:0", _int(0, 2, 0)),
    Param(
        "tiffCompression",
        "TIFF compression",
        {"type": "string", "enum": list(TIFF_COMPRESSIONS), "default": "raw"},
    ),
    Param("webpQuality", "WEBP quality", _int(1, 100, DEFAULT_WEBP_QUALITY)),
    Param("webpLossless", "lossless WEBP", BOOLEAN_TEXT),
    Param("avifQuality", "AVIF quality", _int(1, 100, DEFAULT_AVIF_QUALITY)),
)
assert tuple(p.name for p in ENCODING) == QUERY_PARAMETERS, "common/encoding.py changed"

FRAME = Param("frame", "frame index (0-based)", _int(0, 2**31 - 1, 0))
GENERATION = Param(
    "gen",
    "the source's generation (X-Tilecast-Generation): when current, the answer is "
    "cacheable for a year (immutable); not part of the cache key",
    _int(0),
)
STYLE = Param("style", "large_image style JSON (README, Styles)")
FILL = Param("fill", "letterbox colour when both width and height are given, or none")
DISPOSITION = (
    Param(
        "contentDisposition",
        "send Content-Disposition",
        {"type": "string", "enum": ["inline", "attachment"]},
    ),
    Param("contentDispositionFilename", "the file name it offers"),
)
SIZE = (
    Param("width", "output width in pixels (fit, aspect kept)", _int(0)),
    Param("height", "output height in pixels (fit, aspect kept)", _int(0)),
)
UNITS_PARAM = Param(
    "units",
    "units of the region's coordinates (default base_pixels)",
    {"type": "string", "enum": sorted(UNITS)},
)
REGION = (
    Param("left", "left edge", NUMBER),
    Param("top", "top edge", NUMBER),
    Param("right", "right edge", NUMBER),
    Param("bottom", "bottom edge", NUMBER),
    Param("regionWidth", "width (instead of right)", NUMBER),
    Param("regionHeight", "height (instead of bottom)", NUMBER),
    UNITS_PARAM,
    Param(
        "unitsWH",
        "other units for regionWidth and regionHeight (default: units)",
        {"type": "string", "enum": sorted(UNITS)},
    ),
)
SCALE = (
    Param("magnification", "output magnification (when neither width nor height)", NUMBER),
    Param("mm_x", "output mm per pixel, horizontally", NUMBER),
    Param("mm_y", "output mm per pixel, vertically", NUMBER),
    Param(
        "exact",
        "only a stored level of exactly that magnification or pixel size (else a 400)",
        BOOLEAN_TEXT,
    ),
    Param(
        "resample",
        "histograms: resample to width x height (default true); regions: ignored",
        {"type": "string"},
    ),
)
HISTOGRAM = (
    Param("bins", "bins per band", _int(1, 65536, 256)),
    Param("rangeMin", "lower end of the binned range", NUMBER),
    Param("rangeMax", "upper end of the binned range", NUMBER),
    Param("roundRange", "round the range to integers", BOOLEAN_TEXT),
    Param("density", "densities instead of counts", BOOLEAN_TEXT),
    Param("onlyMinMax", "only each band's min and max", BOOLEAN_TEXT),
)
# Pre-rendering: query or JSON body (README, POST /item/{id}/tiles/precache).
PRECACHE = (
    Param("levels", "levels: 0-6, 0,2,4 (default all)"),
    Param("frames", "frames: a range, a list or all (default 0)"),
    Param("region", "l,t,r,b in base pixels"),
    STYLE,
    *ENCODING,
    Param("thumbnail", "also the thumbnail", BOOLEAN_TEXT),
)
LIMIT = Param("limit", "at most this many", _int(1, default=100))

# What each family of views reads (the routes attach these with :func:`document`).
TILE_QUERY = (FRAME, STYLE, *ENCODING, GENERATION)
THUMBNAIL_QUERY = (*SIZE, FILL, FRAME, STYLE, *ENCODING, *DISPOSITION, GENERATION)
IMAGE_QUERY = (*SIZE, *ENCODING, *DISPOSITION, GENERATION)
REGION_QUERY = (*REGION, *SIZE, *SCALE, FILL, FRAME, STYLE, *ENCODING, *DISPOSITION, GENERATION)
PIXEL_QUERY = (
    Param("left", "x of the pixel", NUMBER),
    Param("top", "y of the pixel", NUMBER),
    UNITS_PARAM,
    FRAME,
    GENERATION,
)
HISTOGRAM_QUERY = (*HISTOGRAM, *SIZE, FRAME, *REGION, *SCALE, GENERATION)
BANDS_QUERY = (FRAME, GENERATION)
IMAGE_ANSWERS = {304: "not modified (If-None-Match matched the strong ETag)"}
SOURCE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["path"],
    "properties": {"path": {"type": "string", "description": "under TILECAST_SOURCE_ROOTS"}},
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
    """The OpenAPI document of every route of ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        item = paths.setdefault(path_template(rule.rule), {})
        methods = sorted((rule.methods or set()) - _IGNORED_METHODS)
        for method in methods:
            operation = _operation(rule.rule, rule.endpoint, view, method)
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


def _operation(rule: str, endpoint: str, view: Callable[..., Any], method: str) -> dict[str, Any]:
    doc = doc_of(view)
    summary, description = _docstring(view, endpoint)
    blueprint = endpoint.rpartition(".")[0] or "app"
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [blueprint],
        "parameters": [*_path_parameters(rule), *(p.to_openapi() for p in doc.query)],
        "responses": _responses(doc),
    }
    if description:
        operation["description"] = description
    if doc.body is not None and method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": dict(doc.body)}},
        }
    if doc.secret:
        operation["security"] = [{"tilecastSecret": []}, {"girderToken": []}]
    return operation


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


def _responses(doc: Doc) -> dict[str, Any]:
    described = dict(doc.responses)
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
        if status in (503, 504):
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
    return {
        "schemas": {"Error": ERROR_SCHEMA},
        "responses": {
            "Error": {
                "description": "an error: 400 a bad parameter (named), 401/403 access, 404 "
                "unknown, 422 unreadable image, 503/504 retry later (Retry-After)",
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
        "securitySchemes": {
            "tilecastSecret": {"type": "apiKey", "in": "header", "name": "Tilecast-Secret"},
            "girderToken": {"type": "apiKey", "in": "header", "name": "Girder-Token"},
        },
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
