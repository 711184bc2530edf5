"""Regions, pixels, histograms and band information: parsing, the hit path, the miss path.

Each is a request type of common/regions.py named by its canonical key. A hit is one
Redis round trip, like a tile's; a miss first checks the request against the image's
metadata (frame, and for regions and histograms the area and output size: a 400 naming
the parameter before any worker is asked); hits, misses, 304s and headers are the
tiles' own (the one path of api/miss/answers.py). JSON answers are computed by workers too:
the api never imports numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tilecast.api.miss import answers
from tilecast.api.miss.answers import Image, Kind, Work, budget, metadata
from tilecast.api.parsing import parse_encoding, parse_frame, parse_style
from tilecast.api.services import Services
from tilecast.api.tilerange import check_frame
from tilecast.common.errors import BadRequest
from tilecast.common.fill import parse_fill
from tilecast.common.grid import Grid
from tilecast.common.regionparams import parse_output_side, parse_units
from tilecast.common.regionplan import Optics, OutputScale, RegionSpec
from tilecast.common.regions import (
    JSON_CONTENT_TYPE,
    BandsRequest,
    HistogramRequest,
    PixelRequest,
    RegionRequest,
)
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import (
    TASK_RENDER_BANDS,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_PIXEL,
    TASK_RENDER_REGION,
    request_payload,
)

AnyRequest = RegionRequest | PixelRequest | HistogramRequest | BandsRequest


# --- parsing ---------------------------------------------------------------------------


def parse_region_request(source: str, args: Mapping[str, str], settings: Settings) -> RegionRequest:
    """The region, ``width``/``height`` (or ``magnification``/``mm_x``/``mm_y``/``exact``
    when neither is given), ``fill``, ``frame``, ``style`` and the encoding. large_image's
    ``resample`` is accepted and ignored: it changes no region it renders in 8 bits."""
    width = parse_output_side(args, "width")
    height = parse_output_side(args, "height")
    return RegionRequest(
        source=source,
        spec=RegionSpec.from_query(args),
        width=width,
        height=height,
        frame=parse_frame(args),
        style=parse_style(args, settings),
        encoding=parse_encoding(args, settings),
        fill=parse_fill(args, width, height),
        scale=OutputScale.from_query(args),
    )


def parse_pixel_request(source: str, args: Mapping[str, str]) -> PixelRequest:
    """``left`` and ``top`` (0 when absent, as in large_image), ``units``, ``frame``."""
    spec = RegionSpec.from_query({k: v for k, v in args.items() if k in ("left", "top")})
    return PixelRequest(
        source=source,
        left=spec.left or 0.0,
        top=spec.top or 0.0,
        units=parse_units(args),
        frame=parse_frame(args),
    )


def parse_histogram_request(source: str, args: Mapping[str, str]) -> HistogramRequest:
    return HistogramRequest.from_query(source, parse_frame(args), args)


def parse_bands_request(source: str, args: Mapping[str, str]) -> BandsRequest:
    return BandsRequest(source=source, frame=parse_frame(args))


# --- hit and miss paths ----------------------------------------------------------------


def region(svc: Services, request: RegionRequest) -> Image:
    def check(meta: Mapping[str, Any]) -> None:
        plan = request.plan(
            grid=_grid(meta), max_pixels=svc.settings.max_region_pixels, optics=Optics.of(meta)
        )
        pixels = plan.out_width * plan.out_height
        if request.fill is not None and request.width and request.height:
            pixels = max(pixels, request.width * request.height)  # letterboxed
        budget(svc, meta, pixels, request.style, request.encoding)

    return _answer(
        svc, answers.REGION, request, TASK_RENDER_REGION, request.encoding.content_type, check
    )


def pixel(svc: Services, request: PixelRequest) -> Image:
    return _answer(svc, answers.PIXEL, request, TASK_RENDER_PIXEL, JSON_CONTENT_TYPE, None)


def histogram(svc: Services, request: HistogramRequest) -> Image:
    def check(meta: Mapping[str, Any]) -> None:
        request.plan(
            grid=_grid(meta), max_pixels=svc.settings.max_region_pixels, optics=Optics.of(meta)
        )

    return _answer(svc, answers.HISTOGRAM, request, TASK_RENDER_HISTOGRAM, JSON_CONTENT_TYPE, check)


def bands(svc: Services, request: BandsRequest) -> Image:
    return _answer(svc, answers.BANDS, request, TASK_RENDER_BANDS, JSON_CONTENT_TYPE, None)


def _grid(meta: Mapping[str, Any]) -> Grid:
    try:
        return Grid.from_metadata(meta)
    except (KeyError, TypeError, ValueError):  # a record this api cannot judge
        raise BadRequest("the image's size is unknown") from None


def _answer(
    svc: Services,
    kind: Kind,
    request: AnyRequest,
    task: str,
    content_type: str,
    check: Callable[[Mapping[str, Any]], None] | None,
) -> Image:
    """The answer named by the request's key (api/miss/answers.py); a miss checks the frame,
    then ``check``, against the image's metadata before it sends ``task``."""

    def miss(gen: int) -> Work:
        meta = metadata(svc, request.source)
        check_frame(request.frame, meta)
        if check is not None:
            check(meta)
        return Work(task, request_payload(request, gen))

    return answers.answer(svc, kind, request.source, content_type, request.key, miss)
