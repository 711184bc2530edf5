"""large_image's other image endpoints: ``/item/{id}/tiles/region``, ``/tiles/pixel``,
``/tiles/histogram`` and ``/tiles/bands`` (girder_large_image's paths, parameter names
and JSON)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from tilecast.api.disposition import add_content_disposition, item_name
from tilecast.api.handlers import regions
from tilecast.api.http import image_response
from tilecast.api.openapi import IMAGE_ANSWERS, IMAGES, document
from tilecast.api.services import services
from tilecast.common import query

bp = Blueprint("regions", __name__)


@bp.get("/item/<item_id>/tiles/region")
@document(query=query.REGION_QUERY, responses=IMAGE_ANSWERS, produces=IMAGES)
def region(item_id: str) -> Response:
    """An area (``left``, ``top``, ``right``, ``bottom``, ``regionWidth``, ``regionHeight``
    in ``units``) fitted into ``width`` x ``height`` (letterboxed with ``fill``) or at
    ``magnification`` / ``mm_x`` / ``mm_y``; ``encoding``, ``style``, ``frame``,
    ``contentDisposition``."""
    svc = services()
    parsed = regions.parse_region_request(item_id, request.args, svc.settings)
    response = image_response(regions.region(svc, parsed), svc.cache_control)
    return add_content_disposition(response, request.args, item_name(item_id), "region")


@bp.get("/item/<item_id>/tiles/pixel")
@document(query=query.PIXEL, responses=IMAGE_ANSWERS)
def pixel(item_id: str) -> Response:
    """One full-resolution pixel at ``left``, ``top``: large_image's ``getPixel`` JSON."""
    svc = services()
    parsed = regions.parse_pixel_request(item_id, request.args)
    return image_response(regions.pixel(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/histogram")
@document(query=query.HISTOGRAM, responses=IMAGE_ANSWERS)
def histogram(item_id: str) -> Response:
    """Per-band histograms: ``bins``, ``rangeMin``, ``rangeMax``, ``roundRange``,
    ``density``, ``onlyMinMax``, ``width``/``height``, ``resample``, ``frame`` and the
    region."""
    svc = services()
    parsed = regions.parse_histogram_request(item_id, request.args)
    return image_response(regions.histogram(svc, parsed), svc.cache_control)


@bp.get("/item/<item_id>/tiles/bands")
@document(query=query.BANDS, responses=IMAGE_ANSWERS)
def bands(item_id: str) -> Response:
    """large_image's ``getBandInformation`` of ``frame``, with statistics."""
    svc = services()
    parsed = regions.parse_bands_request(item_id, request.args)
    return image_response(regions.bands(svc, parsed), svc.cache_control)
