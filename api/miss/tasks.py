"""Sending tasks to the worker pools by name: the api never imports the worker code.

Interactive work is routed (api/miss/routing.py): to the own queue of the worker that holds
its source, else to the shared ``interactive`` queue, else refused with 503. Work sent
to another queue (``bulk``) goes there as asked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import redis
from kombu.exceptions import OperationalError

from tilecast.api.miss.routing import Router
from tilecast.common import share
from tilecast.common.errors import ServiceUnavailable
from tilecast.common.logs import TASK_HEADER, current_request_id
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE, TASK_DESCRIBE_SOURCE, make_celery

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE) -> str:
        """Send one task; the queue it went to (interactive work is routed)."""
        ...


def source_of(payload: Mapping[str, Any]) -> str | None:
    """The source a task works on: ``request.source`` (renders) or ``source`` (describe)."""
    request = payload.get("request")
    source = request.get("source") if isinstance(request, Mapping) else payload.get("source")
    return source if isinstance(source, str) and source else None


class CelerySender:
    """Publishes to the broker; results come back through the cache and ``tc:done``."""

    def __init__(self, settings: Settings, router: Router | None = None) -> None:
        self.celery = make_celery(settings, main="tilecast-api")
        self.router = router
        # A task older than an in-flight marker is a duplicate in waiting: by then the
        # marker has expired and the next asker has sent the work again.
        self.expires = settings.inflight_ttl
        # Interactive sends are noted per source, for the pool share (common/share.py).
        self.share = settings.source_share > 0 and router is not None

    def send(self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE) -> str:
        """Send one task; the queue it went to. Raises Overloaded (backpressure) or
        ServiceUnavailable (no broker)."""
        source = source_of(payload)
        pending: tuple[redis.Redis, str] | None = None
        if queue == QUEUE_INTERACTIVE and self.router is not None:
            queue = self.router.route(source)
            # Describing a file is not a render: it takes no share (workers/tasks.py).
            if self.share and source is not None and name != TASK_DESCRIBE_SOURCE:
                pending = (self.router.state, source)
        task_id = str(uuid.uuid4())
        if pending is not None:
            share.note_pending(*pending, task_id, self.expires)
        try:
            self.celery.send_task(
                name,
                args=[payload],
                queue=queue,
                expires=self.expires,
                headers=_headers(),
                task_id=task_id,
            )
        except OperationalError as exc:
            log.warning("broker unavailable: %s", exc)
            if pending is not None:
                share.forget_pending(*pending, task_id)
            raise ServiceUnavailable("the task broker is unavailable") from None
        return queue


def _headers() -> dict[str, str] | None:
    """The bound request id travels in a message header, so workers log it (and every
    payload stays as it was)."""
    request_id = current_request_id()
    return {TASK_HEADER: request_id} if request_id else None
