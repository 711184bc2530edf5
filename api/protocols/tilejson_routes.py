"""TileJSON 3.0 for XYZ clients: ``/item/{id}/tiles/tilejson.json`` (beside the
metadata and tiles it describes, and under ``/api/v1`` like them)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from tilecast.api.openapi import document
from tilecast.api.parsing import parse_encoding, parse_frame, parse_style
from tilecast.api.protocols import tilejson
from tilecast.api.protocols.handlers import grid
from tilecast.api.services import services
from tilecast.common import query
from tilecast.common.params import names

bp = Blueprint("tilejson", __name__)
# What a tile URL of the template carries on from the TileJSON request.
PASSED = (
    query.FRAME.name,
    query.STYLE.name,
    *names(query.ENCODING_PARAMS),
    query.GIRDER_TOKEN.name,
    *names(query.SIGNED_GRANT),
)
# A template's placeholders are the only braces clients fill in.
TEMPLATE = "zxy/{z}/{x}/{y}"


@bp.get("/item/<item_id>/tiles/tilejson.json")
@document(query=query.TILEJSON)
def tilejson_document(item_id: str) -> Response:
    """``tiles`` is the absolute ``zxy`` URL template with this request's ``frame``,
    ``style``, encoding parameters and ``token``, checked here first (a 400 names a
    bad one before any client asks a tile)."""
    svc = services()
    args = request.args
    parse_frame(args)
    parse_style(args, svc.settings)
    encoding = parse_encoding(args, svc.settings).format
    image = grid(svc, item_id)
    passed = [(name, args[name]) for name in PASSED if args.get(name)]
    url = request.base_url.removesuffix("tilejson.json") + TEMPLATE
    if passed:
        url += "?" + urlencode(passed)
    name = svc.registry.get(item_id).name
    return jsonify(tilejson.document(name, url, image, encoding))
