"""Deep Zoom: ``/item/{id}/tiles/dzi.dzi`` and its ``dzi_files/{level}/{x}_{y}.{ext}``
tiles, with girder_large_image's parameters (``tilesize``, ``overlap``, ``encoding``,
and every tile parameter: ``frame``, ``style``, ``jpegQuality``, ...). OpenSeadragon
passes the descriptor's query on to each tile it asks for."""

from __future__ import annotations

from flask import Blueprint, Response, request

from tilecast.api.handlers.tiles import metadata
from tilecast.api.http import image_response
from tilecast.api.openapi import IMAGE_ANSWERS, IMAGES, document
from tilecast.api.parsing import parse_encoding, parse_frame, parse_style
from tilecast.api.protocols import dzi
from tilecast.api.protocols.handlers import box_image, grid
from tilecast.api.services import services
from tilecast.api.tilerange import check_frame, check_style_frames
from tilecast.common import query
from tilecast.common.encoding import ENCODING
from tilecast.common.errors import BadRequest

bp = Blueprint("dzi", __name__)


@bp.get("/item/<item_id>/tiles/dzi.dzi")
@document(query=query.DZI_DESCRIPTOR, produces=("text/xml",))
def descriptor(item_id: str) -> Response:
    """The Deep Zoom descriptor (XML): ``TileSize``, ``Overlap``, ``Format``, ``Size``.

    It refuses what its tiles would: every parameter is parsed as the tile route parses
    it, the frame and the frames a style reads must exist, and its largest tile must be
    one the region bound lets a tile be rendered at (``TILECAST_MAX_REGION_PIXELS``)."""
    svc = services()
    args = request.args
    layout = dzi.Layout.from_query(args)
    encoding = parse_encoding(args, svc.settings).format
    if encoding not in dzi.FORMATS:
        raise BadRequest(
            f"Deep Zoom tiles are {', '.join(dzi.FORMATS)}, not {encoding}", parameter="encoding"
        )
    frame = parse_frame(args)
    style = parse_style(args, svc.settings)
    image = grid(svc, item_id)
    meta = metadata(svc, item_id)
    check_frame(frame, meta)
    check_style_frames(style, frame, meta)
    width, height = dzi.largest_tile(layout, image.size_x, image.size_y)
    aligned = (layout.overlap, layout.tile_size) == (0, image.tile_width) == (0, image.tile_height)
    if not aligned and width * height > svc.settings.max_region_pixels:
        # Tiles off tilecast's own grid are regions, bounded like every region.
        raise BadRequest(
            f"tiles of tilesize {layout.tile_size} and overlap {layout.overlap} are up to "
            f"{width} x {height} pixels, more than the {svc.settings.max_region_pixels} "
            "this server renders at once (TILECAST_MAX_REGION_PIXELS)",
            parameter=query.TILESIZE.name if layout.overlap == 0 else query.OVERLAP.name,
        )
    xml = dzi.descriptor(layout, encoding, image.size_x, image.size_y)
    # Spelled as girder_large_image's server sends it (no space), for byte-equal headers.
    return Response(xml, content_type="text/xml;charset=utf-8")


@bp.get("/item/<item_id>/tiles/dzi_files/<level>/<xandy>")
@document(query=query.DZI_TILE, responses=IMAGE_ANSWERS, produces=IMAGES)
def tile(item_id: str, level: str, xandy: str) -> Response:
    """Tile ``x``, ``y`` of Deep Zoom level ``level``; its extension names the encoding
    when no ``encoding`` parameter does."""
    svc = services()
    layout = dzi.Layout.from_query(request.args)
    x, y, named = dzi.parse_tile_name(xandy)
    image = grid(svc, item_id)
    box = dzi.tile_box(layout, dzi.parse_level(level), x, y, image.size_x, image.size_y)
    args = dict(request.args)
    if named is not None and not args.get(ENCODING.name):
        args[ENCODING.name] = named
    return image_response(box_image(svc, item_id, box, image, args), svc.cache_control)
