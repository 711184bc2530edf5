"""large_image's associated image endpoints: ``/item/{id}/tiles/images`` (the names) and
``/item/{id}/tiles/images/{name}`` (one image: ``width``, ``height``, ``encoding``,
``jpegQuality``, ``jpegSubsampling``, ``tiffCompression``, ``contentDisposition``)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from tilecast.api.disposition import add_content_disposition, item_name
from tilecast.api.handlers import images
from tilecast.api.http import image_response
from tilecast.api.openapi import IMAGE_ANSWERS, IMAGES, document
from tilecast.api.parsing import parse_encoding
from tilecast.api.services import services
from tilecast.common import query
from tilecast.common.associated import AssociatedRequest

bp = Blueprint("images", __name__)


@bp.get("/item/<item_id>/tiles/images")
def names(item_id: str) -> Response:
    """A JSON list of the image's associated image names, sorted."""
    return jsonify(images.names(services(), item_id))


@bp.get("/item/<item_id>/tiles/images/<name>")
@document(query=query.IMAGE, responses=IMAGE_ANSWERS, produces=IMAGES)
def image(item_id: str, name: str) -> Response:
    """One associated image, fitted into ``width`` x ``height`` when either is given."""
    svc = services()
    width = query.IMAGE_WIDTH.integer(request.args, svc.settings)
    height = query.IMAGE_HEIGHT.integer(request.args, svc.settings)
    assert width is not None and height is not None
    parsed = AssociatedRequest(
        source=item_id,
        name=name,
        width=width,
        height=height,
        encoding=parse_encoding(request.args, svc.settings),
    )
    response = image_response(images.image(svc, parsed), svc.cache_control)
    return add_content_disposition(response, request.args, item_name(item_id), name)
