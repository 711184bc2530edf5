"""Tiles, thumbnails and metadata of a source: the hit path and the miss path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tilecast.api.services import Services
from tilecast.api.tilerange import check_frame, check_tile
from tilecast.common import activity, stats
from tilecast.common.cost import check_budget, fitted_pixels
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import SourceChanged, SourceGone
from tilecast.common.protocol import (
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    render_thumbnail_payload,
    render_tile_payload,
)
from tilecast.common.refusals import check_refused
from tilecast.common.tiles import ThumbnailRequest, TileRequest

CACHE = "cache"
# Set in Image.outcome when the image was rendered under a newer generation than its
# key's (the source's file changed while the request was served): the key it has.
RENEWED_KEY = "renewed-key"
HIT = "hit"
MISS = "miss"


@dataclass(frozen=True)
class Image:
    """A tile or thumbnail named by its cache key; ``load`` reads (or renders) its bytes.

    Loading is deferred so that a conditional request can be answered from the key alone.
    """

    key: str
    content_type: str
    load: Callable[[], bytes]
    # Called instead of ``load`` when the client already has the image (a 304).
    not_modified: Callable[[], None] | None = None
    # What ``load`` found: {"cache": "hit"} or {"cache": "miss"} (tiles, thumbnails);
    # sent as the X-Tilecast-Cache header, which the load test classifies by.
    outcome: dict[str, str] = field(default_factory=dict)


def metadata(svc: Services, source_id: str) -> dict[str, Any]:
    """The registered metadata; 410 when the source's file is gone (common/registry.py).
    Read fresh, it may be newer than this process's generation memo: the memo is
    dropped then, so the answer's X-Tilecast-Generation names this metadata's."""
    record = svc.registry.readable(source_id)
    if record.generation is not None and record.generation > svc.generations.get(source_id):
        svc.generations.forget(source_id)
    return record.metadata


def tile(svc: Services, request: TileRequest) -> Image:
    generation = svc.generations.get(request.source)

    def render_at(gen: int) -> bytes:
        # Only a miss pays for the range check: a hit's key was valid when rendered.
        meta = metadata(svc, request.source)
        check_tile(request, meta)
        tile_pixels = int(meta.get("tileWidth", 256)) * int(meta.get("tileHeight", 256))
        budget(svc, meta, tile_pixels, request.style, request.encoding)
        payload = render_tile_payload(request, gen)
        after_send = None
        if svc.prefetcher is not None:
            prefetcher = svc.prefetcher

            def after_send() -> None:
                prefetcher.after_miss(request, gen, meta)

        return _render(svc, request.key(gen), TASK_RENDER_TILE, payload, after_send=after_send)

    key = request.key(generation)
    outcome: dict[str, str] = {}
    render = _renewing(svc, request.source, generation, render_at, request.key, outcome)
    return _image(
        svc, key, request.source, request.encoding.content_type, render, TILE_COUNTERS, outcome
    )


def thumbnail(svc: Services, request: ThumbnailRequest) -> Image:
    generation = svc.generations.get(request.source)

    def render_at(gen: int) -> bytes:
        meta = metadata(svc, request.source)
        check_frame(request.frame, meta)
        size = int(meta.get("sizeX", 0)), int(meta.get("sizeY", 0))
        pixels = (
            request.width * request.height
            if request.fill is not None
            else fitted_pixels(request.width, request.height, *size)
        )
        budget(svc, meta, pixels, request.style, request.encoding)
        payload = render_thumbnail_payload(request, gen)
        return _render(svc, request.key(gen), TASK_RENDER_THUMBNAIL, payload)

    key = request.key(generation)
    outcome: dict[str, str] = {}
    render = _renewing(svc, request.source, generation, render_at, request.key, outcome)
    return _image(
        svc, key, request.source, request.encoding.content_type, render, THUMBNAIL_COUNTERS, outcome
    )


def _renewing(
    svc: Services,
    source: str,
    generation: int,
    render_at: Callable[[int], bytes],
    key_of: Callable[[int], str],
    outcome: dict[str, str],
) -> Callable[[], bytes]:
    """Render at ``generation``; when a worker answers that the source's file changed
    since (a newer generation is registered: this process's memo was behind), render
    once more at the new generation, whose key the answer then names
    (``outcome[RENEWED_KEY]``, the ETag's source): the viewer gets the new file's
    tile instead of a 503."""

    def render() -> bytes:
        try:
            return render_at(generation)
        except SourceChanged:
            current = svc.generations.get(source)  # _render dropped the memo
            if current <= generation:
                raise
            outcome[RENEWED_KEY] = key_of(current)
            return render_at(current)

    return render


def budget(
    svc: Services,
    meta: Mapping[str, Any],
    pixels: int,
    style: str | None,
    encoding: EncodingOptions,
) -> None:
    """A 400 ``over_budget`` when rendering ``pixels`` output pixels of this image with
    ``style`` into ``encoding`` would cost more than TILECAST_MAX_REQUEST_COST."""
    bands = int(meta.get("bandCount") or 3)
    check_budget(pixels, style, bands, encoding, svc.settings.max_request_cost)


# (hits, misses) counters of each kind of image.
TILE_COUNTERS = (stats.API_TILE_HITS, stats.API_TILE_MISSES)
THUMBNAIL_COUNTERS = (stats.API_THUMBNAIL_HITS, stats.API_THUMBNAIL_MISSES)


def _image(
    svc: Services,
    key: str,
    source: str,
    content_type: str,
    render: Callable[[], bytes],
    counters: tuple[str, str],
    outcome: dict[str, str] | None = None,
) -> Image:
    """The image under ``key``: a cache hit, or ``render()`` on a miss; counted, and
    its source recorded as viewed."""
    outcome = {} if outcome is None else outcome

    def load() -> bytes:
        data = cached(svc, key, source)
        if data is not None:
            svc.counters.add(counters[0])
            outcome[CACHE] = HIT
            return data
        svc.counters.add(counters[1])
        outcome[CACHE] = MISS
        return render()

    return Image(key, content_type, load, _viewed(svc, source), outcome)


def cached(svc: Services, key: str, source: str) -> bytes | None:
    """GET ``key``; about once every few seconds per source and process the GET also
    records that ``source`` is being viewed, in the same round trip (common/activity.py)."""
    if not svc.activity.due(source):
        return svc.cache.get(key)
    try:
        return activity.get_and_touch(svc.cache.client, key, source)
    except Exception:
        svc.activity.forget(source)  # touch again on the next request
        raise


def _viewed(svc: Services, source: str) -> Callable[[], None]:
    """What a 304 does: count it, and record the viewing (a round trip only when the
    activity memo says it is due)."""

    def not_modified() -> None:
        svc.counters.add(stats.API_NOT_MODIFIED)
        if svc.activity.due(source):
            try:
                activity.touch(svc.cache.client, source)
            except Exception:  # a 304 needs no Redis; activity is best effort here
                svc.activity.forget(source)

    return not_modified


def _render(
    svc: Services,
    key: str,
    task: str,
    payload: dict[str, Any],
    *,
    after_send: Callable[[], None] | None = None,
) -> bytes:
    """``after_send`` runs once the claimer has dispatched the task (prefetch)."""

    def send() -> object:
        sent = svc.sender.send(task, payload)
        if after_send is not None:
            after_send()
        return sent

    # A render stopped by its time limit a moment ago is not tried again at once.
    check_refused(svc.state, key)
    try:
        return svc.dispatcher.fetch(key, lookup=lambda: svc.cache.get(key), send=send)
    except (SourceChanged, SourceGone):
        # A worker found the source's file changed and registered it again: this
        # process asks for the new generation at once, not after generation_ttl.
        svc.generations.forget(str(payload["request"]["source"]))
        raise


# The one miss path (single-flight dispatch, waiting on completion), shared with
# regions, pixels, histograms and band information (api/handlers/regions.py).
render = _render
