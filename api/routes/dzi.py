"""Deep Zoom: ``/item/{id}/tiles/dzi.dzi`` and its ``dzi_files/{level}/{x}_{y}.{ext}``
tiles, with girder_large_image's parameters (``tilesize``, ``overlap``, ``encoding``,
and every tile parameter: ``frame``, ``style``, ``jpegQuality``, ...). OpenSeadragon
passes the descriptor's query on to each tile it asks for."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import dzi
from api.handlers.protocols import box_image, grid
from api.http import image_response
from api.openapi import ENCODING, FRAME, IMAGE_ANSWERS, IMAGES, STYLE, TILE_QUERY, Param, document
from api.parsing import parse_encoding, parse_frame, parse_style
from api.services import services
from common.errors import BadRequest

bp = Blueprint("dzi", __name__)
LAYOUT = (
    Param(
        "tilesize",
        "Deep Zoom tile size, a power of two",
        {"type": "integer", "minimum": 1, "maximum": dzi.MAX_TILE_SIZE, "default": 256},
    ),
    Param(
        "overlap",
        "pixels each tile repeats of its neighbours",
        {"type": "integer", "minimum": 0, "default": 0},
    ),
)


@bp.get("/item/<item_id>/tiles/dzi.dzi")
@document(query=(*LAYOUT, FRAME, STYLE, *ENCODING), produces=("text/xml",))
def descriptor(item_id: str) -> Response:
    """The Deep Zoom descriptor (XML): ``TileSize``, ``Overlap``, ``Format``, ``Size``."""
    svc = services()
    args = request.args
    layout = dzi.Layout.from_query(args)
    encoding = parse_encoding(args, svc.settings).format
    if encoding not in dzi.FORMATS:
        raise BadRequest(
            f"Deep Zoom tiles are {', '.join(dzi.FORMATS)}, not {encoding}", parameter="encoding"
        )
    parse_frame(args)
    parse_style(args, svc.settings)
    image = grid(svc, item_id)
    xml = dzi.descriptor(layout, encoding, image.size_x, image.size_y)
    # Spelled as girder_large_image's server sends it (no space), for byte-equal headers.
    return Response(xml, content_type="text/xml;charset=utf-8")


@bp.get("/item/<item_id>/tiles/dzi_files/<level>/<xandy>")
@document(query=(*LAYOUT, *TILE_QUERY), responses=IMAGE_ANSWERS, produces=IMAGES)
def tile(item_id: str, level: str, xandy: str) -> Response:
    """Tile ``x``, ``y`` of Deep Zoom level ``level``; its extension names the encoding
    when no ``encoding`` parameter does."""
    svc = services()
    layout = dzi.Layout.from_query(request.args)
    x, y, named = dzi.parse_tile_name(xandy)
    image = grid(svc, item_id)
    box = dzi.tile_box(layout, dzi.parse_level(level), x, y, image.size_x, image.size_y)
    args = dict(request.args)
    if named is not None and not args.get("encoding"):
        args["encoding"] = named
    return image_response(box_image(svc, item_id, box, image, args), svc.cache_control)
