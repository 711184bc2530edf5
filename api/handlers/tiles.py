"""Tiles, thumbnails and metadata of a source: the hit path and the miss path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.services import Services
from api.tilerange import check_frame, check_tile
from common.protocol import (
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    render_thumbnail_payload,
    render_tile_payload,
)
from common.tiles import ThumbnailRequest, TileRequest


@dataclass(frozen=True)
class Image:
    """A tile or thumbnail named by its cache key; ``load`` reads (or renders) its bytes.

    Loading is deferred so that a conditional request can be answered from the key alone.
    """

    key: str
    content_type: str
    load: Callable[[], bytes]


def metadata(svc: Services, source_id: str) -> dict[str, Any]:
    return svc.registry.get(source_id).metadata


def tile(svc: Services, request: TileRequest) -> Image:
    generation = svc.generations.get(request.source)
    key = request.key(generation)

    def load() -> bytes:
        data = svc.cache.get(key)
        if data is not None:
            return data
        # Only a miss pays for the range check: a hit's key was valid when rendered.
        check_tile(request, metadata(svc, request.source))
        return _render(svc, key, TASK_RENDER_TILE, render_tile_payload(request, generation))

    return Image(key, request.encoding.content_type, load)


def thumbnail(svc: Services, request: ThumbnailRequest) -> Image:
    generation = svc.generations.get(request.source)
    key = request.key(generation)

    def load() -> bytes:
        data = svc.cache.get(key)
        if data is not None:
            return data
        check_frame(request.frame, metadata(svc, request.source))
        payload = render_thumbnail_payload(request, generation)
        return _render(svc, key, TASK_RENDER_THUMBNAIL, payload)

    return Image(key, request.encoding.content_type, load)


def _render(svc: Services, key: str, task: str, payload: dict[str, Any]) -> bytes:
    return svc.dispatcher.fetch(
        key,
        lookup=lambda: svc.cache.get(key),
        send=lambda: svc.sender.send(task, payload),
    )


# The one miss path (single-flight dispatch, waiting on completion), shared with
# regions, pixels, histograms and band information (api/handlers/regions.py).
render = _render
