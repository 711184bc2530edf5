"""The task protocol between api and workers: names, queues, payloads, Celery config.

The api sends tasks by name (``send_task``) with payloads built here; it never imports
the worker code. Results travel through the cache and the ``tc:done`` channel
(common.inflight), not through a Celery result backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu import Queue

from tilecast.common.associated import AssociatedRequest
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.settings import Settings
from tilecast.common.tiles import ThumbnailRequest, TileRequest
from tilecast.common.zarrchunk import ChunkRequest

QUEUE_INTERACTIVE = "interactive"
QUEUE_BULK = "bulk"
QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)

TASK_RENDER_TILE = "tilecast.render_tile"
TASK_RENDER_THUMBNAIL = "tilecast.render_thumbnail"
# A block of tiles of one level, source, frame, style and encoding (bulk rendering):
# render_tiles_payload / tile_requests_from_payload below.
TASK_RENDER_TILES = "tilecast.render_tiles"
TASK_DESCRIBE_SOURCE = "tilecast.describe_source"
TASK_RENDER_ASSOCIATED = "tilecast.render_associated"
# Regions, pixels, histograms and band information (common/regions.py): each payload is
# {"request": X.to_payload(), "generation": g}; the result is written under X.key(g).
TASK_RENDER_REGION = "tilecast.render_region"
TASK_RENDER_PIXEL = "tilecast.render_pixel"
TASK_RENDER_HISTOGRAM = "tilecast.render_histogram"
TASK_RENDER_BANDS = "tilecast.render_bands"
# A chunk of the OME-Zarr view (common/zarrchunk.py): {"request": ChunkRequest.to_payload(),
# "generation": g}; the compressed chunk is written under ChunkRequest.key(g).
TASK_RENDER_ZARR_CHUNK = "tilecast.render_zarr_chunk"
# One batch of a pre-rendering job (common/jobstore.py), on the bulk queue; the job driver
# (workers/precache.py) sends it with precache_batch_payload below.
TASK_PRECACHE_BATCH = "tilecast.precache_batch"


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
        # Redis transport: a worker polls its queues in the order given (an interactive
        # node: its own affinity queue, then the shared one), not round-robin.
        # Its sockets time out like every other Redis client's (TILECAST_REDIS_TIMEOUT):
        # a frozen broker fails a dispatch in seconds instead of holding it.
        broker_transport_options={
            "visibility_timeout": 3600,
            "queue_order_strategy": "priority",
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_connect_timeout,
        },
        worker_hijack_root_logger=False,
        # Recycle pool processes (prefork): Celery starts a fresh one after the task that
        # reaches either bound; its Renderer is made anew (workers/tasks.py).
        worker_max_tasks_per_child=settings.worker_max_tasks or None,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        # Time limits per task kind (prefork pool): past the soft one the task stops
        # (workers/tasks.py tells its waiters too_costly), past the hard one its pool
        # process is killed (workers/limits.py releases what it held).
        task_annotations=time_limits(settings),
    )
    return app


INTERACTIVE_TASKS = (
    TASK_RENDER_TILE,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_ASSOCIATED,
    TASK_RENDER_REGION,
    TASK_RENDER_PIXEL,
    TASK_RENDER_HISTOGRAM,
    TASK_RENDER_BANDS,
    TASK_RENDER_ZARR_CHUNK,
    TASK_DESCRIBE_SOURCE,
)
BULK_TASKS = (TASK_RENDER_TILES, TASK_PRECACHE_BATCH)


def time_limits(settings: Settings) -> dict[str, dict[str, float | None]]:
    """Celery's ``soft_time_limit`` / ``time_limit`` of every task, by kind (0 = none)."""
    interactive = {
        "soft_time_limit": settings.render_soft_time_limit or None,
        "time_limit": settings.render_time_limit or None,
    }
    bulk = {
        "soft_time_limit": settings.bulk_soft_time_limit or None,
        "time_limit": settings.bulk_time_limit or None,
    }
    limits = {name: interactive for name in INTERACTIVE_TASKS}
    limits.update({name: bulk for name in BULK_TASKS})
    return limits


def render_tile_payload(request: TileRequest, generation: int) -> dict[str, Any]:
    return {"request": request.to_payload(), "generation": generation}


def render_tiles_payload(requests: Sequence[TileRequest], generation: int) -> dict[str, Any]:
    """One task for many tiles that differ only in x and y (what a worker renders
    together, reusing what it decoded, with one Redis round trip per flush)."""
    first = requests[0]
    payload = render_tile_payload(first, generation)
    del payload["request"]["x"], payload["request"]["y"]
    for request in requests:
        if (request.source, request.z, request.frame, request.style, request.encoding) != (
            first.source,
            first.z,
            first.frame,
            first.style,
            first.encoding,
        ):
            raise ValueError("the tiles of one render_tiles task must share all but x and y")
    payload["tiles"] = [[request.x, request.y] for request in requests]
    return payload


def prefetch_payload(
    requests: Sequence[TileRequest], generation: int, expires: float
) -> dict[str, Any]:
    """A render_tiles task of a prefetch (api/miss/prefetch.py): the worker renders a
    tile only until ``expires`` (epoch seconds) and only while nobody claimed it."""
    payload = render_tiles_payload(requests, generation)
    payload["prefetch"] = {"expires": expires}
    return payload


def prefetch_expiry(payload: Mapping[str, Any]) -> float | None:
    """When a prefetch's tiles stop being worth rendering; None for other batches."""
    prefetch = payload.get("prefetch")
    if not isinstance(prefetch, Mapping):
        return None
    return float(prefetch["expires"])


def tile_requests_from_payload(payload: Mapping[str, Any]) -> list[TileRequest]:
    common = dict(payload["request"])
    return [TileRequest.from_payload({**common, "x": x, "y": y}) for x, y in payload["tiles"]]


def render_thumbnail_payload(request: ThumbnailRequest, generation: int) -> dict[str, Any]:
    return {"request": request.to_payload(), "generation": generation}


def request_payload(
    request: RegionRequest | PixelRequest | HistogramRequest | BandsRequest | ChunkRequest,
    generation: int,
) -> dict[str, Any]:
    """The payload of the region, pixel, histogram, bands and zarr chunk tasks."""
    return {"request": request.to_payload(), "generation": generation}


def render_associated_payload(request: AssociatedRequest, generation: int) -> dict[str, Any]:
    return {"request": request.to_payload(), "generation": generation}


def describe_source_payload(
    source_id: str, path: str, done_key: str, *, after: int | None = None
) -> dict[str, Any]:
    """``after``: describe again (the file changed) unless the source's generation has
    moved past it meanwhile; without it a registered source is left as it is."""
    payload: dict[str, Any] = {"source": source_id, "path": path, "done_key": done_key}
    if after is not None:
        payload["after"] = after
    return payload


def precache_batch_payload(job_id: str, batch: int, attempt: int) -> dict[str, Any]:
    """A job's batch: the worker reads the spec from the job record and plans the batch
    itself (the plan is a pure function of the spec), so the message stays small."""
    return {"job": job_id, "batch": batch, "attempt": attempt}
