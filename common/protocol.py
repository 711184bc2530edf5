"""The task protocol between api and workers: names, queues, payloads, Celery config.

The api sends tasks by name (``send_task``) with payloads built here; it never imports
the worker code. Results travel through the cache and the ``tc:done`` channel
(common.inflight), not through a Celery result backend.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from common.settings import Settings
from common.tiles import ThumbnailRequest, TileRequest

QUEUE_INTERACTIVE = "interactive"
QUEUE_BULK = "bulk"
QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)

TASK_RENDER_TILE = "tilecast.render_tile"
TASK_RENDER_THUMBNAIL = "tilecast.render_thumbnail"
TASK_DESCRIBE_SOURCE = "tilecast.describe_source"


def make_celery(settings: Settings, main: str = "tilecast") -> Celery:
    app = Celery(main, broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE_INTERACTIVE,
        task_queues=[Queue(name) for name in QUEUES],
        # A person waits on each interactive task: take one at a time so a long render
        # never holds short ones behind it in a worker's prefetch buffer.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
    )
    return app


def render_tile_payload(request: TileRequest, generation: int) -> dict[str, Any]:
    return {"request": request.to_payload(), "generation": generation}


def render_thumbnail_payload(request: ThumbnailRequest, generation: int) -> dict[str, Any]:
    return {"request": request.to_payload(), "generation": generation}


def describe_source_payload(source_id: str, path: str, done_key: str) -> dict[str, Any]:
    return {"source": source_id, "path": path, "done_key": done_key}
