"""The worker side of the per-source pool share (common/share.py): admit a starting
interactive task, or defer it to the tail of the shared queue behind other sources.

Deferring rather than refusing: the task's waiters keep waiting on the same in-flight
marker and are answered when the task comes round again (a 503 would send the viewer
away for work the pool can do a moment later). A task is deferred at most
``MAX_DEFERRALS`` times, then runs whatever waits, so a stream of other sources' work
cannot starve a source for ever.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis

from tilecast.common import share
from tilecast.common.logs import TASK_HEADER
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.workers_live import ROLE_INTERACTIVE, read_workers
from tilecast.workers.requestids import request_id_of

log = logging.getLogger(__name__)

MAX_DEFERRALS = 100
# How long a process trusts its count of the pool's processes.
POOL_SECONDS = 2.0
# A running entry outlives the hard time limit by this much before it counts as lost.
RUNNING_MARGIN_SECONDS = 30.0

_pool_lock = threading.Lock()
_pool: tuple[float, int] = (-float("inf"), 0)


def pool_processes(state: redis.Redis) -> int:
    """The live interactive pool processes, on every node (read at most every
    POOL_SECONDS)."""
    global _pool
    with _pool_lock:
        at, count = _pool
        now = time.monotonic()
        if now - at >= POOL_SECONDS:
            workers = read_workers(state)
            count = sum(w.concurrency for w in workers if w.role == ROLE_INTERACTIVE)
            _pool = (now, count)
        return count


class RenderYielded(Exception):
    """This render is past its source's share while another source waits."""


def yield_check(
    state: redis.Redis, settings: Settings, source: str, task_id: str
) -> Callable[[], None]:
    """What a guarded render runs at its checkpoints: RenderYielded when it should give
    its process up to another source's pending work."""

    def check() -> None:
        limit = share.share_limit(settings.source_share, pool_processes(state))
        try:
            over = share.should_yield(
                state, source, task_id, limit, pending_ttl=settings.inflight_ttl
            )
        except redis.RedisError as exc:
            log.warning("cannot check the pool share of %s: %s", source, exc)
            return
        if over:
            raise RenderYielded(task_id)

    return check


def running_ttl(settings: Settings) -> float:
    limit = settings.render_time_limit or settings.render_soft_time_limit or 3600.0
    return limit + RUNNING_MARGIN_SECONDS


def admit(
    state: redis.Redis, settings: Settings, payload: Mapping[str, Any], source: str, task_id: str
) -> bool:
    """Whether this task may start now (it then counts as running until
    :func:`common.share.finish`)."""
    limit = share.share_limit(settings.source_share, pool_processes(state))
    if int(payload.get("deferrals") or 0) >= MAX_DEFERRALS:
        limit = 1 << 30  # deferred often enough: run now
    return share.admit(
        state,
        source,
        task_id,
        limit,
        running_ttl=running_ttl(settings),
        pending_ttl=settings.inflight_ttl,
    )


def defer(
    app: Any,
    state: redis.Redis,
    settings: Settings,
    name: str,
    payload: Mapping[str, Any],
    source: str,
    task_request: Any,
) -> None:
    """Send the task again to the tail of the shared queue (a new id, noted pending),
    keeping its expiry and request id."""
    again = {**payload, "deferrals": int(payload.get("deferrals") or 0) + 1}
    task_id = str(uuid.uuid4())
    share.note_pending(state, source, task_id, settings.inflight_ttl)
    request_id = request_id_of(task_request)
    app.send_task(
        name,
        args=[again],
        queue=QUEUE_INTERACTIVE,
        expires=getattr(task_request, "expires", None),
        task_id=task_id,
        headers={TASK_HEADER: request_id} if request_id else None,
    )
    log.info("deferred a %s of source %s behind other sources' work", name, source)
