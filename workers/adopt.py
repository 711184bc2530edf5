"""A worker that starts a task from the shared ``interactive`` queue names itself in the
task's in-flight marker.

The api names a worker's own queue in a marker when it routes a task there, so that a
waiter that sees that worker die sends the task again (api/miss/dispatch.py). A task taken
from the shared queue had no such name: if its worker died, the Redis broker would keep
the message unacknowledged for its visibility timeout (an hour, by when the task has
expired), and its waiters had a 504 before the marker expired. Rewriting the marker to
``"{own queue} {owner}"`` (its TTL kept) when the render starts lets the waiters rescue
it like any routed task, within about ``TILECAST_WORKER_TTL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis
from celery import current_task

from tilecast.common import inflight
from tilecast.common.associated import AssociatedRequest
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.routing import affinity_queue
from tilecast.common.taskprotocol import (
    QUEUE_INTERACTIVE,
    TASK_RENDER_ASSOCIATED,
    TASK_RENDER_BANDS,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_PIXEL,
    TASK_RENDER_REGION,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest

log = logging.getLogger(__name__)

# The one-answer tasks whose marker a waiter watches, and how their payload's request
# is read (as workers/tasks.py reads it).
_REQUEST_PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    TASK_RENDER_TILE: TileRequest.from_payload,
    TASK_RENDER_THUMBNAIL: ThumbnailRequest.from_payload,
    TASK_RENDER_ASSOCIATED: AssociatedRequest.from_payload,
    TASK_RENDER_REGION: RegionRequest.from_payload,
    TASK_RENDER_PIXEL: PixelRequest.from_payload,
    TASK_RENDER_HISTOGRAM: HistogramRequest.from_payload,
    TASK_RENDER_BANDS: BandsRequest.from_payload,
}


def _adopting_queue(node: str, delivery: Mapping[str, Any] | None) -> str | None:
    """The queue an interactive ``node`` names in the marker of a task delivered as
    ``delivery``; None when there is nothing to do: a bulk node has no queue a waiter
    could check, and a task routed to the node's own queue was named by the api."""
    if not node.startswith(f"{QUEUE_INTERACTIVE}-"):
        return None
    own = affinity_queue(node)
    return None if (delivery or {}).get("routing_key") == own else own


def adopt_received(state: redis.Redis, node: str, request: Any) -> None:
    """In the node's main process, when it reserves a task from another queue than its
    own: name the node in the task's marker at once, so a node killed between reserving
    a task and starting it is rescued like one killed mid-render. Best effort."""
    parse = _REQUEST_PARSERS.get(str(getattr(request, "name", "")))
    own = _adopting_queue(node, getattr(request, "delivery_info", None))
    if parse is None or own is None:
        return
    try:
        payload = request.args[0]
        key = parse(payload["request"]).key(int(payload["generation"]))
        inflight.adopt(state, key, own)
    except (redis.RedisError, LookupError, TypeError, ValueError, AttributeError) as exc:
        log.warning("could not name this worker in a received task's marker: %s", exc)


def adopt_marker(state: redis.Redis, key: str) -> None:
    """Name this node's own queue in ``key``'s marker when the running task came from
    another queue (the shared one, or a dead node's, swept). Best effort: a Redis error
    only costs the rescue."""
    request = getattr(current_task, "request", None)
    hostname = getattr(request, "hostname", None) or ""
    own = _adopting_queue(hostname, getattr(request, "delivery_info", None))
    if own is None:
        return
    try:
        inflight.adopt(state, key, own)
    except redis.RedisError as exc:
        log.warning("could not name this worker in the marker of %s: %s", key, exc)
