"""The Celery tasks of docs/CONTRACT.md: render_tile, render_thumbnail, describe_source.

Every task ends by announcing a :class:`~common.inflight.Completion` for its key (the
api's waiters listen for it) and never raises: a :class:`TilecastError` is announced
with its payload; anything else is logged with its traceback and announced as
RenderFailed without internal details. A task whose key is already cached only
announces, so a duplicate dispatch costs one EXISTS.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import redis
from celery.signals import worker_process_init

from common import stats
from common.errors import RenderFailed, ServiceUnavailable, TilecastError
from common.inflight import Completion, announce
from common.protocol import TASK_DESCRIBE_SOURCE, TASK_RENDER_THUMBNAIL, TASK_RENDER_TILE
from common.registry import SourceRecord
from common.settings import get_settings
from common.tiles import ThumbnailRequest, TileRequest
from workers.celeryapp import app
from workers.describe import describe_path
from workers.engine import Renderer

log = logging.getLogger(__name__)

_renderer: Renderer | None = None
_renderer_lock = threading.Lock()


def get_renderer() -> Renderer:
    """This process's Renderer, created on first use (after the pool has forked)."""
    global _renderer
    if _renderer is None:
        with _renderer_lock:
            if _renderer is None:
                _renderer = Renderer(get_settings())
    return _renderer


def use_renderer(renderer: Renderer | None) -> None:
    """Install (or with None, forget) the process's Renderer; tests use this."""
    global _renderer
    with _renderer_lock:
        _renderer = renderer


@worker_process_init.connect
def _forget_inherited_renderer(**_kwargs: Any) -> None:
    # Redis connections and open files must not be shared with the parent process.
    use_renderer(None)


@app.task(name=TASK_RENDER_TILE, ignore_result=True)
def render_tile(payload: Mapping[str, Any]) -> None:
    try:
        request = TileRequest.from_payload(payload["request"])
        generation = int(payload["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload %r: %s", TASK_RENDER_TILE, payload, exc)
        return
    renderer = get_renderer()
    key = request.key(generation)
    _complete(
        renderer,
        key,
        lambda: _render_into_cache(
            renderer, key, lambda: renderer.render_tile(request, generation)
        ),
        counter=stats.TILES_RENDERED,
    )


@app.task(name=TASK_RENDER_THUMBNAIL, ignore_result=True)
def render_thumbnail(payload: Mapping[str, Any]) -> None:
    try:
        request = ThumbnailRequest.from_payload(payload["request"])
        generation = int(payload["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload %r: %s", TASK_RENDER_THUMBNAIL, payload, exc)
        return
    renderer = get_renderer()
    key = request.key(generation)
    _complete(
        renderer,
        key,
        lambda: _render_into_cache(
            renderer, key, lambda: renderer.render_thumbnail(request, generation)
        ),
        counter=stats.THUMBNAILS_RENDERED,
    )


@app.task(name=TASK_DESCRIBE_SOURCE, ignore_result=True)
def describe_source(payload: Mapping[str, Any]) -> None:
    try:
        source_id = str(payload["source"])
        path = str(payload["path"])
        done_key = str(payload["done_key"])
    except (KeyError, TypeError) as exc:
        log.error("malformed %s payload %r: %s", TASK_DESCRIBE_SOURCE, payload, exc)
        return
    renderer = get_renderer()

    def work() -> bool:
        if renderer.registry.exists(source_id):
            return False  # a duplicate dispatch: the record is already there
        metadata = describe_path(path, renderer.settings)
        record = SourceRecord(source_id, path, os.path.basename(path), metadata)
        renderer.registry.add(record)
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
    except TilecastError as exc:
        log.info("%s failed: %s: %s", key, exc.code, exc.message)
        completion = Completion(key, error=exc.to_payload())
        extra[stats.RENDER_ERRORS] = 1
    except redis.RedisError as exc:
        log.warning("%s failed: Redis is unavailable: %s", key, exc)
        error = ServiceUnavailable("the cache is unavailable; retry later")
        completion = Completion(key, error=error.to_payload())
        extra[stats.RENDER_ERRORS] = 1
    except Exception:
        log.exception("%s failed", key)
        completion = Completion(key, error=RenderFailed("the render failed").to_payload())
        extra[stats.RENDER_ERRORS] = 1
    try:
        renderer.flush_counters(**extra)
    except Exception:
        log.exception("could not record the counters of %s", key)
    try:
        announce(renderer.state, completion)
    except Exception:
        # The waiters re-check the cache about once a second and time out otherwise.
        log.exception("could not announce the completion of %s", key)
