"""The Celery tasks of docs/CONTRACT.md: render_tile, render_thumbnail, describe_source.

Every task ends by announcing a :class:`~common.inflight.Completion` for its key (the
api's waiters listen for it) and never raises: a :class:`TilecastError` is announced
with its payload; anything else is logged with its traceback and announced as
RenderFailed without internal details. A task whose key is already cached only
announces, so a duplicate dispatch costs one EXISTS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

from celery import current_task
from celery.exceptions import SoftTimeLimitExceeded

from tilecast.common import counters
from tilecast.common import share as common_share
from tilecast.common.associated import AssociatedRequest
from tilecast.common.errors import TooCostly
from tilecast.common.inflight import Completion, announce
from tilecast.common.refusals import refuse
from tilecast.common.regions import (
    REGIONS_RENDERED,
    BandsRequest,
    HistogramRequest,
    PixelRequest,
    RegionRequest,
)
from tilecast.common.registry import SourceRecord
from tilecast.common.taskprotocol import (
    QUEUE_INTERACTIVE,
    TASK_DESCRIBE_SOURCE,
    TASK_RENDER_ASSOCIATED,
    TASK_RENDER_BANDS,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_PIXEL,
    TASK_RENDER_REGION,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    TASK_RENDER_TILES,
    TASK_RENDER_ZARR_CHUNK,
    prefetch_expiry,
    tile_requests_from_payload,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest
from tilecast.common.zarrchunk import ChunkRequest
from tilecast.workers import histogram, limits, precache, region, zarrchunk  # noqa: F401
from tilecast.workers import share as pool_share
from tilecast.workers.adopt import adopt_marker
from tilecast.workers.batch import render_batch
from tilecast.workers.celeryapp import app
from tilecast.workers.describe import describe_file, registered
from tilecast.workers.engine import Renderer
from tilecast.workers.guard import RenderAbandoned, checkpoint, guarding
from tilecast.workers.outcome import failure
from tilecast.workers.prefetching import PrefetchGuard
from tilecast.workers.process_renderer import get_renderer
from tilecast.workers.requestids import request_id_of  # noqa: F401  (binds request ids to tasks)
from tilecast.workers.share import RenderYielded

log = logging.getLogger(__name__)

CachedRequest = (
    TileRequest
    | ThumbnailRequest
    | AssociatedRequest
    | RegionRequest
    | PixelRequest
    | HistogramRequest
    | BandsRequest
    | ChunkRequest
)


def _render_request(
    payload: Mapping[str, Any],
    task: str,
    parse: Callable[[Mapping[str, Any]], Any],
    render: Callable[[Renderer, Any, int], bytes],
    counter: str | None,
) -> None:
    """Every task that renders one cached answer: parse the request, render it into
    the cache unless it is there already, announce the outcome."""
    try:
        request: CachedRequest = parse(payload["request"])
        generation = int(payload["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload %r: %s", task, payload, exc)
        return
    renderer = get_renderer()
    key = request.key(generation)
    task_request = getattr(current_task, "request", None)
    task_id = str(getattr(task_request, "id", None) or "")
    # Someone waits for every task an interactive node runs (bulk work goes to the bulk
    # pool): those are guarded and share the pool (workers/guard.py, workers/share.py).
    interactive = str(getattr(task_request, "hostname", None) or "").startswith(
        f"{QUEUE_INTERACTIVE}-"
    )
    shared = interactive and renderer.settings.source_share > 0 and bool(task_id)
    if shared and not pool_share.admit(
        renderer.state, renderer.settings, payload, request.source, task_id
    ):
        pool_share.defer(
            app, renderer.state, renderer.settings, task, payload, request.source, task_request
        )
        _count(renderer, counters.RENDERS_DEFERRED)
        return
    adopt_marker(renderer.state, key)
    kind = task.rpartition(".")[2].removeprefix("render_")

    def timed_render() -> bytes:
        checkpoint()  # nobody waits any more (it waited in the queue): do nothing
        with renderer.latency.timed(kind):
            return render(renderer, request, generation)

    also = (
        pool_share.yield_check(renderer.state, renderer.settings, request.source, task_id)
        if shared
        else None
    )
    try:
        limit = renderer.settings.render_soft_time_limit
        with guarding(renderer.state, key, also, limit) if interactive else nullcontext():
            _complete(
                renderer,
                key,
                lambda: _render_into_cache(renderer, key, timed_render),
                counter=counter,
            )
    except RenderYielded:
        # Past its source's share while another source waits: go on later, from what
        # it cached (the marker and the waiters stay).
        pool_share.defer(
            app, renderer.state, renderer.settings, task, payload, request.source, task_request
        )
        _count(renderer, counters.RENDERS_DEFERRED)
    finally:
        if shared:
            _release_share(renderer, request.source, task_id)


def _release_share(renderer: Renderer, source: str, task_id: str) -> None:
    try:
        common_share.finish(renderer.state, source, task_id)
    except Exception:
        # Its entry ages out after the hard time limit (common/share.py).
        log.exception("could not release the pool share of %s", task_id)


def _count(renderer: Renderer, counter: str) -> None:
    try:
        renderer.flush_counters(**{counter: 1})
    except Exception:
        log.exception("could not count %s", counter)


@app.task(name=TASK_RENDER_TILE, ignore_result=True)
def render_tile(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_TILE,
        TileRequest.from_payload,
        lambda r, request, g: r.render_tile(request, g),
        counters.TILES_RENDERED,
    )


@app.task(name=TASK_RENDER_TILES, ignore_result=True)
def render_tiles(payload: Mapping[str, Any]) -> None:
    """A block of tiles of one level (workers/batch.py)."""
    try:
        requests = tile_requests_from_payload(payload)
        generation = int(payload["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload: %s", TASK_RENDER_TILES, exc)
        return
    try:
        expires = prefetch_expiry(payload)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s prefetch: %s", TASK_RENDER_TILES, exc)
        return
    try:
        renderer = get_renderer()
        if expires is None:
            render_batch(renderer, requests, generation)
        else:
            _prefetch(renderer, requests, generation, expires)
    except Exception:
        # Redis went away mid-batch: the waiters re-check the cache and time out, and
        # the in-flight markers expire; nothing here can tell them more.
        log.exception("%s of %d tiles failed", TASK_RENDER_TILES, len(requests))


def _prefetch(
    renderer: Renderer, requests: list[TileRequest], generation: int, expires: float
) -> None:
    """A prefetch's tiles, each only while still worth it (workers/prefetching.py)."""
    guard = PrefetchGuard(renderer.cache_client, renderer.state, expires)
    result = render_batch(renderer, requests, generation, still_wanted=guard.wanted)
    renderer.flush_counters(
        **{counters.PREFETCH_RENDERED: result.rendered, counters.PREFETCH_DROPPED: guard.dropped}
    )


@app.task(name=TASK_RENDER_THUMBNAIL, ignore_result=True)
def render_thumbnail(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_THUMBNAIL,
        ThumbnailRequest.from_payload,
        lambda r, request, g: r.render_thumbnail(request, g),
        counters.THUMBNAILS_RENDERED,
    )


@app.task(name=TASK_DESCRIBE_SOURCE, ignore_result=True)
def describe_source(payload: Mapping[str, Any]) -> None:
    try:
        source_id = str(payload["source"])
        path = str(payload["path"])
        done_key = str(payload["done_key"])
        after = None if payload.get("after") is None else int(payload["after"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload %r: %s", TASK_DESCRIBE_SOURCE, payload, exc)
        return
    renderer = get_renderer()

    def work() -> bool:
        if renderer.registry.is_current(source_id, after):
            return False  # a duplicate dispatch: the record is already there
        described = describe_file(path, renderer.settings)
        record = SourceRecord(
            source_id, path, described.name, described.metadata, identity=described.identity
        )
        registered(path, renderer.settings, renderer.registry.register(record)[1])
        log.info("registered source %s (%s)", source_id, record.name)
        return False  # describing is not one of the counted renders

    _complete(renderer, done_key, work, counter=None)


def _render_into_cache(renderer: Renderer, key: str, render: Callable[[], bytes]) -> bool:
    """Render and store ``key`` unless it is already cached; True when rendered."""
    if renderer.cache.exists(key):
        return False
    renderer.cache.put(key, render())
    return True


def _complete(
    renderer: Renderer, key: str, work: Callable[[], bool], *, counter: str | None
) -> None:
    """Run ``work``, count it, announce the outcome for ``key``; never raise."""
    extra: dict[str, int] = {}
    try:
        if work() and counter:
            extra[counter] = 1
        completion = Completion(key)
    except RenderAbandoned:
        # No error: a waiter that joined just now finds the marker gone and sends again.
        log.info("render of %s abandoned: nobody waits for it any more", key)
        extra[counters.RENDERS_ABANDONED] = 1
        completion = Completion(key)
    except RenderYielded:
        raise  # not an outcome: the task is deferred (_render_request)
    except SoftTimeLimitExceeded:
        completion = _too_costly(renderer, key)
        extra[counters.RENDERS_TOO_COSTLY] = 1
    except Exception as exc:
        completion = failure(key, exc)
        extra[counters.RENDER_ERRORS] = 1
    try:
        renderer.flush_counters(**extra)
    except Exception:
        log.exception("could not record the counters of %s", key)
    try:
        announce(renderer.state, completion)
    except Exception:
        # The waiters re-check the cache about once a second and time out otherwise.
        log.exception("could not announce the completion of %s", key)


def _too_costly(renderer: Renderer, key: str) -> Completion:
    """The render of ``key`` passed its soft time limit: tell its waiters, and the next
    askers for a while (common/refusals.py)."""
    settings = renderer.settings
    error = TooCostly(
        f"the render passed its time limit of {settings.render_soft_time_limit:g} s and "
        f"was stopped; retry after {settings.too_costly_ttl} s"
    )
    log.warning("render of %s stopped at its soft time limit", key)
    try:
        refuse(renderer.state, key, error, settings.too_costly_ttl)
    except Exception:
        log.exception("could not remember that %s is too costly", key)
    return Completion(key, error=error.to_payload())


@app.task(name=TASK_RENDER_ASSOCIATED, ignore_result=True)
def render_associated(payload: Mapping[str, Any]) -> None:
    """An associated image (label, macro, thumbnail) or the list of their names."""
    _render_request(
        payload,
        TASK_RENDER_ASSOCIATED,
        AssociatedRequest.from_payload,
        lambda r, request, g: r.render_associated(request, g),
        None,
    )


# --- regions, pixels, histograms, band information (common/regions.py) -----------------


@app.task(name=TASK_RENDER_REGION, ignore_result=True)
def render_region(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_REGION,
        RegionRequest.from_payload,
        region.render_region,
        REGIONS_RENDERED,
    )


@app.task(name=TASK_RENDER_PIXEL, ignore_result=True)
def render_pixel(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_PIXEL,
        PixelRequest.from_payload,
        lambda r, request, g: region.json_bytes(region.pixel_values(r, request, g)),
        None,
    )


@app.task(name=TASK_RENDER_HISTOGRAM, ignore_result=True)
def render_histogram(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_HISTOGRAM,
        HistogramRequest.from_payload,
        lambda r, request, g: region.json_bytes(histogram.histogram(r, request, g)),
        None,
    )


@app.task(name=TASK_RENDER_BANDS, ignore_result=True)
def render_bands(payload: Mapping[str, Any]) -> None:
    _render_request(
        payload,
        TASK_RENDER_BANDS,
        BandsRequest.from_payload,
        lambda r, request, g: region.json_bytes(histogram.band_information(r, request, g)),
        None,
    )


@app.task(name=TASK_RENDER_ZARR_CHUNK, ignore_result=True)
def render_zarr_chunk(payload: Mapping[str, Any]) -> None:
    """A chunk of the OME-Zarr view (workers/zarrchunk.py)."""
    _render_request(
        payload,
        TASK_RENDER_ZARR_CHUNK,
        ChunkRequest.from_payload,
        zarrchunk.render_chunk,
        None,
    )
