"""Tiles, thumbnails and metadata of a source: what a tile or thumbnail checks and
sends on a miss; the hit and miss path itself is api/miss/answers.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask

from tilecast.api.miss import answers
from tilecast.api.miss.answers import Image, Work, budget, metadata
from tilecast.api.services import Services
from tilecast.api.tilerange import check_frame, check_tile
from tilecast.common.cost import fitted_pixels
from tilecast.common.taskprotocol import (
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    render_thumbnail_payload,
    render_tile_payload,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest

__all__ = ["metadata", "thumbnail", "tile"]


def tile(svc: Services, request: TileRequest) -> Image:
    def miss(gen: int) -> Work:
        # Only a miss pays for the range check: a hit's key was valid when rendered.
        meta = metadata(svc, request.source)
        check_tile(request, meta)
        tile_pixels = int(meta.get("tileWidth", 256)) * int(meta.get("tileHeight", 256))
        budget(svc, meta, tile_pixels, request.style, request.encoding)
        payload = render_tile_payload(request, gen)
        return Work(TASK_RENDER_TILE, payload, after_send=_prefetch(svc, request, gen, meta))

    return answers.answer(
        svc,
        answers.TILE,
        request.source,
        request.encoding.content_type,
        request.key,
        miss,
        after_hit=_prefetch_hit(svc, request),
    )


def _prefetch(
    svc: Services, request: TileRequest, gen: int, meta: dict[str, Any]
) -> Callable[[], None] | None:
    """Prefetch after a tile's task is sent (api/miss/prefetch.py), when enabled; the
    viewer is named now, while the request is at hand."""
    prefetcher = svc.prefetcher
    if prefetcher is None or not flask.has_request_context():
        return None
    viewer = prefetcher.viewer(flask.request, request)
    return lambda: prefetcher.after_miss(request, gen, meta, viewer)


def _prefetch_hit(svc: Services, request: TileRequest) -> Callable[[int], None] | None:
    """A hit answered here (a styled tile, or a mode the hit path leaves to Flask) feeds
    the prefetch too, when enabled."""
    prefetcher = svc.prefetcher
    if prefetcher is None:
        return None

    def after_hit(gen: int) -> None:
        if flask.has_request_context():
            prefetcher.after_hit(request, gen, prefetcher.viewer(flask.request, request))

    return after_hit


def thumbnail(svc: Services, request: ThumbnailRequest) -> Image:
    def miss(gen: int) -> Work:
        meta = metadata(svc, request.source)
        check_frame(request.frame, meta)
        size = int(meta.get("sizeX", 0)), int(meta.get("sizeY", 0))
        pixels = (
            request.width * request.height
            if request.fill is not None
            else fitted_pixels(request.width, request.height, *size)
        )
        budget(svc, meta, pixels, request.style, request.encoding)
        return Work(TASK_RENDER_THUMBNAIL, render_thumbnail_payload(request, gen))

    return answers.answer(
        svc, answers.THUMBNAIL, request.source, request.encoding.content_type, request.key, miss
    )
