"""Sending tasks to the worker pools by name: the api never imports the worker code."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kombu.exceptions import OperationalError

from common.errors import ServiceUnavailable
from common.protocol import QUEUE_INTERACTIVE, make_celery
from common.settings import Settings

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE) -> None: ...


class CelerySender:
    """Publishes to the broker; results come back through the cache and ``tc:done``."""

    def __init__(self, settings: Settings) -> None:
        self.celery = make_celery(settings, main="tilecast-api")
        # A task older than an in-flight marker is a duplicate in waiting: by then the
        # marker has expired and the next asker has sent the work again.
        self.expires = settings.inflight_ttl

    def send(self, name: str, payload: dict[str, Any], queue: str = QUEUE_INTERACTIVE) -> None:
        try:
            self.celery.send_task(name, args=[payload], queue=queue, expires=self.expires)
        except OperationalError as exc:
            log.warning("broker unavailable: %s", exc)
            raise ServiceUnavailable("the task broker is unavailable") from None
