"""large_image's other image endpoints: ``/item/{id}/tiles/region``, ``/tiles/pixel``,
``/tiles/histogram`` and ``/tiles/bands`` (girder_large_image's paths, parameter names
and JSON)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.handlers import regions
from api.http import image_response
from api.services import services

bp = Blueprint("regions", __name__)


@bp.get("/item/<item_id>/tiles/region")
def region(item_id: str) -> Response:
    """An area (``left``, ``top``, ``right``, ``bottom``, ``regionWidth``, ``regionHeight``
    in ``units``) fitted into ``width`` x ``height``; ``encoding``, ``style``, ``frame``."""
    svc = services()
    parsed = regions.parse_region_request(item_id, request.args, svc.settings)
    return image_response(regions.region(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/pixel")
def pixel(item_id: str) -> Response:
    """One full-resolution pixel at ``left``, ``top``: large_image's ``getPixel`` JSON."""
    svc = services()
    parsed = regions.parse_pixel_request(item_id, request.args)
    return image_response(regions.pixel(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/histogram")
def histogram(item_id: str) -> Response:
    """Per-band histograms: ``bins``, ``rangeMin``, ``rangeMax``, ``roundRange``,
    ``density``, ``onlyMinMax``, ``width``/``height``, ``frame`` and the region."""
    svc = services()
    parsed = regions.parse_histogram_request(item_id, request.args)
    return image_response(regions.histogram(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/bands")
def bands(item_id: str) -> Response:
    """large_image's ``getBandInformation`` of ``frame``, with statistics."""
    svc = services()
    parsed = regions.parse_bands_request(item_id, request.args)
    return image_response(regions.bands(svc, parsed), svc.cache_control)
