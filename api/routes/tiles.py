"""large_image's tile endpoints: ``/item/{id}/tiles``, ``.../zxy/{z}/{x}/{y}``,
``.../fzxy/{frame}/{z}/{x}/{y}`` and ``.../thumbnail``."""

from __future__ import annotations

import dataclasses

from flask import Blueprint, Response, jsonify, request

from tilecast.api.disposition import add_content_disposition, item_name
from tilecast.api.handlers import tiles
from tilecast.api.http import image_response
from tilecast.api.openapi import IMAGE_ANSWERS, IMAGES, document
from tilecast.api.parsing import parse_thumbnail_request, parse_tile_request
from tilecast.api.services import services
from tilecast.api.tilerange import path_frame
from tilecast.common import query

bp = Blueprint("tiles", __name__)


@bp.get("/item/<item_id>/tiles")
@document(responses={404: "unknown item"})
def metadata(item_id: str) -> Response:
    """The image's metadata, with large_image's field names."""
    return jsonify(tiles.metadata(services(), item_id))


@bp.get("/item/<item_id>/tiles/zxy/<z>/<x>/<y>")
@document(query=query.TILE, responses=IMAGE_ANSWERS, produces=IMAGES)
def tile(item_id: str, z: str, x: str, y: str) -> Response:
    """One tile; ``encoding``, ``jpegQuality``, ``jpegSubsampling``, ``tiffCompression``,
    ``style`` and ``frame`` as in large_image."""
    svc = services()
    parsed = parse_tile_request(item_id, z, x, y, request.args, svc.settings)
    return image_response(tiles.tile(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/fzxy/<frame>/<z>/<x>/<y>")
@document(query=query.TILE_IN_FRAME, responses=IMAGE_ANSWERS, produces=IMAGES)
def tile_with_frame(item_id: str, frame: str, z: str, x: str, y: str) -> Response:
    """The same tile as ``zxy`` with the frame in the path (any ``frame`` query is ignored)."""
    svc = services()
    args = {key: value for key, value in request.args.items() if key != query.FRAME.name}
    parsed = parse_tile_request(item_id, z, x, y, args, svc.settings)
    parsed = dataclasses.replace(parsed, frame=path_frame(frame))
    return image_response(tiles.tile(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/thumbnail")
@document(query=query.THUMBNAIL_QUERY, responses=IMAGE_ANSWERS, produces=IMAGES)
def thumbnail(item_id: str) -> Response:
    """The whole image fitted into ``width`` x ``height`` (256 x 256 when neither is
    given), letterboxed with ``fill``; ``contentDisposition`` names it for download."""
    svc = services()
    parsed = parse_thumbnail_request(item_id, request.args, svc.settings)
    response = image_response(tiles.thumbnail(svc, parsed), svc.cache_control)
    return add_content_disposition(response, request.args, item_name(item_id), "thumbnail")
