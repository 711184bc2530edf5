"""IIIF Image API 3.0 (api/protocols/iiif.py): ``/iiif/{id}`` (a 303 to its ``info.json``),
``/iiif/{id}/info.json`` and ``/iiif/{id}/{region}/{size}/{rotation}/{quality}.{format}``.

The identifier is the item id every other endpoint takes, so access checks apply as
they do there. Requests on tilecast's tile grid are its ``zxy`` tiles (one cache); the
rest are regions. The spec asks level-1 services for CORS: without
``TILECAST_CORS_ORIGINS`` these answers allow any origin, with it they follow it.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, redirect, request, url_for

from tilecast.api.http import image_response
from tilecast.api.openapi import IMAGE_ANSWERS, document
from tilecast.api.protocols import iiif
from tilecast.api.protocols.handlers import box_image, grid
from tilecast.api.services import services

bp = Blueprint("iiif", __name__, url_prefix="/iiif")
PROFILE_LINK = f'<{iiif.PROFILE_URI}>;rel="profile"'


def service_id(item_id: str) -> str:
    """The image service's base URI, as this request reached the server."""
    return url_for("iiif.base", item_id=item_id, _external=True)


@bp.get("/<item_id>")
@document(responses={303: "see info.json"})
def base(item_id: str) -> Response:
    """The base URI redirects to the image information (spec 2.2)."""
    return redirect(url_for("iiif.info_json", item_id=item_id, _external=True), 303)


@bp.get("/<item_id>/info.json")
@document(responses=IMAGE_ANSWERS, produces=("application/json", "application/ld+json"))
def info_json(item_id: str) -> Response:
    """The Image Information document; JSON-LD when the client's Accept asks for it."""
    svc = services()
    document = iiif.info(service_id(item_id), grid(svc, item_id), svc.settings.max_region_pixels)
    body = json.dumps(document, separators=(",", ":"))
    wanted = request.accept_mimetypes.best_match(["application/json", "application/ld+json"])
    content_type = iiif.JSON_LD_TYPE if wanted == "application/ld+json" else "application/json"
    response = Response(body, content_type=content_type)
    response.headers["Link"] = PROFILE_LINK
    response.vary.add("Accept")
    response.set_etag(hashlib.sha256(f"{content_type}\n{body}".encode()).hexdigest()[:32])
    return response.make_conditional(request)


@bp.get("/<item_id>/<region>/<size>/<rotation>/<quality_format>")
@document(
    responses={**IMAGE_ANSWERS, 501: "a well-formed request for a feature not implemented"},
    produces=tuple(f"image/{name}" for name in ("jpeg", "png", "webp", "tiff")),
)
def image(item_id: str, region: str, size: str, rotation: str, quality_format: str) -> Response:
    """An image request; its canonical URI and the profile in the ``Link`` header."""
    svc = services()
    parsed = iiif.parse_request(region, size, rotation, quality_format)
    image_grid = grid(svc, item_id)
    max_area = svc.settings.max_region_pixels
    box = iiif.resolve(parsed, image_grid.size_x, image_grid.size_y, max_area)
    answer = box_image(svc, item_id, box, image_grid, {"encoding": parsed.encoding})
    response = image_response(answer, svc.cache_control)
    path = iiif.canonical_path(box, parsed, image_grid.size_x, image_grid.size_y, max_area)
    response.headers["Link"] = f'<{service_id(item_id)}/{path}>;rel="canonical", {PROFILE_LINK}'
    return response


@bp.after_request
def allow_any_origin(response: Response) -> Response:
    if not services().settings.cors_origins.strip():
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response
