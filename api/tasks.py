"""Sending tasks to the worker pools by name: the api never imports the worker code.

Interactive work is routed (api/routing.py): to the own queue of the worker that holds
its source, else to the shared ``interactive`` queue, else refused with 503. Work sent
to another queue (``bulk``) goes there as asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from kombu.exceptions import OperationalError

from api.routing import Router
from common.errors import ServiceUnavailable
from common.logs import TASK_HEADER, current_request_id
from common.protocol import QUEUE_INTERACTIVE, make_celery
from common.settings import Settings

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(
        self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE
    ) -> object: ...


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

    def send(self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE) -> str:
        """Send one task; the queue it went to. Raises Overloaded (backpressure) or
        ServiceUnavailable (no broker)."""
        if queue == QUEUE_INTERACTIVE and self.router is not None:
            queue = self.router.route(source_of(payload))
        try:
            self.celery.send_task(
                name, args=[payload], queue=queue, expires=self.expires, headers=_headers()
            )
        except OperationalError as exc:
            log.warning("broker unavailable: %s", exc)
            raise ServiceUnavailable("the task broker is unavailable") from None
        return queue


def _headers() -> dict[str, str] | None:
    """The bound request id travels in a message header, so workers log it (and every
    payload stays as it was)."""
    request_id = current_request_id()
    return {TASK_HEADER: request_id} if request_id else None
