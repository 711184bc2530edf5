"""Pre-rendering jobs on the worker side: the batch task and the job driver.

The driver is one loop in the parent process of every worker that serves the ``bulk``
queue; a Redis lock (renewed every step, expiring a few seconds after its holder dies)
elects the one that acts. Each step it looks at the running jobs and, for each, re-
dispatches batches whose lease expired (their worker died or their task was lost: the
broker's own redelivery waits an hour), records as failed a batch that used up its
attempts, keeps ``job_inflight_batches`` batches dispatched, and finishes a job whose
batches are all settled. Everything it knows is in Redis, so killing every process and
starting them again resumes each job where it stopped: settled batches are never
dispatched again, and a batch that was running is retried -- its tiles already written
are cache hits, the rest render once.

A batch task renders its tiles through ``workers.batch.render_batch`` after taking the
tiles' in-flight markers (owner ``job:{id}:{batch}``, shared by every attempt so a retry
takes over what a killed attempt left): tiles already cached, or being rendered by
someone else (a viewer's miss, another job), are skipped, never rendered twice. At each
flush it counts its renders, renews its lease and stops if the job was cancelled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from tilecast.common import counters
from tilecast.common.errors import RenderFailed, ServiceUnavailable, TilecastError, UnknownJob
from tilecast.common.inflight import (
    Completion,
    announce,
    announce_many,
    claim_many,
    release_owned,
)
from tilecast.common.jobplan import BASE_TILES, RAW, THUMBNAIL, Batch, Plan, plan
from tilecast.common.jobspec import JobSpec
from tilecast.common.jobstore import RUNNING, JobStore, tile_owner
from tilecast.common.keys import ACTIVE_JOBS_KEY as ACTIVE_KEY
from tilecast.common.keys import job_record_key as record_key
from tilecast.common.redisconn import connect
from tilecast.common.settings import Settings, get_settings
from tilecast.common.taskprotocol import QUEUE_BULK, TASK_PRECACHE_BATCH, precache_batch_payload
from tilecast.common.tiles import TileRequest
from tilecast.workers.batch import FlushHook, render_batch
from tilecast.workers.celeryapp import app
from tilecast.workers.engine import Renderer
from tilecast.workers.outcome import failure
from tilecast.workers.process_renderer import get_renderer

log = logging.getLogger(__name__)

# The driver's lock lives this long without renewal: a killed driver is replaced after it.
DRIVER_LOCK_TTL = 5.0
DRIVER_PERIOD = 0.1
# A failed attempt is retried after 2**attempt seconds.
RETRY_BACKOFF = 2.0


class JobCancelled(Exception):
    """The job of a running batch is no longer running."""


# --- the batch task --------------------------------------------------------------------


@dataclass
class BatchOutcome:
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Plans:
    """Each process's plans of recent jobs (a spec never changes under its job id)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.plans: OrderedDict[str, Plan] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, state: redis.Redis, job_id: str) -> Plan:
        with self.lock:
            found = self.plans.get(job_id)
            if found is not None:
                self.plans.move_to_end(job_id)
                return found
        raw = state.hget(record_key(job_id), "spec")
        if raw is None:
            raise UnknownJob.of(job_id)
        the_plan = plan(JobSpec.from_payload(json.loads(raw)))  # type: ignore[arg-type]
        with self.lock:
            self.plans[job_id] = the_plan
            while len(self.plans) > self.size:
                self.plans.popitem(last=False)
        return the_plan


_plans = _Plans()


def _renderer() -> Renderer:
    return get_renderer()


@app.task(name=TASK_PRECACHE_BATCH, ignore_result=True)
def precache_batch(payload: Mapping[str, Any]) -> None:
    try:
        job_id = str(payload["job"])
        index = int(payload["batch"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("malformed %s payload %r: %s", TASK_PRECACHE_BATCH, payload, exc)
        return
    renderer = _renderer()
    try:
        run_batch(renderer, JobStore(renderer.state), renderer.settings, job_id, index)
    except Exception:
        # Redis unreachable: the batch's lease expires and the driver dispatches it again.
        log.exception("batch %d of job %s could not be recorded", index, job_id)


def run_batch(
    renderer: Renderer, store: JobStore, settings: Settings, job_id: str, index: int
) -> BatchOutcome | None:
    """Render batch ``index`` of ``job_id`` and settle it; None when it did not run
    (settled already, job cancelled or gone)."""
    try:
        the_plan = _plans.get(renderer.state, job_id)
    except UnknownJob:
        return None
    spec = the_plan.spec
    batch = the_plan.batch(index)
    if not store.begin_batch(job_id, index, time.time() + settings.job_lease):
        return None
    runner = _BatchRunner(renderer, store, settings, job_id, batch, spec)
    try:
        outcome = runner.run()
    except JobCancelled:
        log.info("job %s cancelled: batch %d stopped", job_id, index)
        return None
    except Exception as exc:
        _attempt_failed(store, settings, job_id, batch, exc)
        return None
    finally:
        runner.release()
    store.add_errors(job_id, outcome.errors)
    store.settle(
        job_id,
        index,
        done=outcome.rendered + outcome.skipped,
        skipped=outcome.skipped,
        failed=outcome.failed,
    )
    return outcome


def _attempt_failed(
    store: JobStore, settings: Settings, job_id: str, batch: Batch, exc: Exception
) -> None:
    """A whole attempt failed (not one tile): retried later, or after the last attempt
    recorded as failed with its error so that the job still finishes. An error of the
    request or the file (a TilecastError other than an outage) would fail again: it is
    recorded at once."""
    error = failure(f"job {job_id} batch {batch.index}", exc).error
    attempts = store.attempts(job_id, batch.index)
    transient = not isinstance(exc, TilecastError) or isinstance(exc, ServiceUnavailable)
    if transient and attempts < settings.job_max_attempts:
        log.warning(
            "batch %d of job %s failed (attempt %d): %s", batch.index, job_id, attempts, exc
        )
        store.retry_later(job_id, batch.index, time.time() + RETRY_BACKOFF**attempts)
        return
    store.add_errors(job_id, [{"batch": batch.index, "z": batch.z, "error": error}])
    store.settle(job_id, batch.index, done=0, skipped=0, failed=batch.size)


class _BatchRunner:
    def __init__(
        self,
        renderer: Renderer,
        store: JobStore,
        settings: Settings,
        job_id: str,
        batch: Batch,
        spec: JobSpec,
    ) -> None:
        self.renderer = renderer
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.batch = batch
        self.spec = spec
        self.owner = tile_owner(job_id, batch.index)
        self.claimed: set[str] = set()
        self.outcome = BatchOutcome()

    def run(self) -> BatchOutcome:
        if self.batch.kind == THUMBNAIL:
            self._thumbnail()
        elif self.batch.kind == RAW:
            self._raw()
        elif self.batch.kind == BASE_TILES:
            self._base_tiles()
        else:
            self._tiles(self.batch.tile_requests(self.spec))
        return self.outcome

    # -- unstyled tiles of levels the file may lack -----------------------------------------
    def _raw(self) -> None:
        """Synthesize (and cache) the batch's unstyled tiles; nothing to do when the
        file has the level. Its tiles are not part of the job's count."""
        assert self.batch.z is not None
        self._synthesize(self.batch.z, self.batch.tiles)

    def _base_tiles(self) -> None:
        """The block's styled base tiles, then level by level the unstyled tiles under
        them (and their styled tiles where the job wants the level), every tile read or
        made once and kept for the batch (common/jobplan.py)."""
        assert self.batch.z is not None
        last = self.batch.under[-1].z if self.batch.under else None
        with self.renderer.keeping_tiles():
            self._tiles(self.batch.tile_requests(self.spec))
            for level in self.batch.under:
                # Only the last level's unstyled tiles are read after the batch (by the
                # coarser levels'); the ones between stay in memory (issue 20: bulk may
                # keep its intermediates; interactive synthesis caches its own).
                self._synthesize(level.z, level.tiles, cache=level.z == last)
                if level.styled:
                    self._tiles(self.batch.level_requests(self.spec, level.z, level.tiles))

    def _synthesize(self, z: int, coords: Sequence[tuple[int, int]], *, cache: bool = True) -> None:
        """Unstyled tiles ``coords`` of level ``z`` made, row by row, where the file lacks
        the level, and put in the cache (``cache``) or only in the batch's kept tiles."""
        frame = self.batch.frame
        source = self.renderer.open(self.spec.source, self.spec.generation)
        if source.is_native_level(z, frame):
            return
        tiles = self.renderer.raw_tiles(source, self.spec.source, self.spec.generation)
        tiles.store_made = cache
        rows: dict[int, list[tuple[int, int]]] = {}
        for x, y in coords:
            rows.setdefault(y, []).append((x, y))
        for row in rows.values():
            tiles.get_many(z, row, frame)
            self.renderer.flush_counters()
            lease = time.time() + self.settings.job_lease
            if not self.store.progress_batch(self.job_id, self.batch.index, 0, lease):
                raise JobCancelled(self.job_id)

    # -- tiles ------------------------------------------------------------------------------
    def _tiles(self, requests: Sequence[TileRequest]) -> None:
        generation = self.spec.generation
        by_key = {request.key(generation): request for request in requests}
        mine, others = self._claim(list(by_key))
        self._render([by_key[key] for key in mine])
        if others:
            # In flight elsewhere (a viewer's miss, another job): by now most are done.
            # Those still held by someone else are theirs to finish.
            again, still = self._claim(others)
            self._render([by_key[key] for key in again])
            self.outcome.skipped += len(still)

    def _render(self, requests: list[TileRequest]) -> None:
        if not requests:
            return
        keys = {request.key(self.spec.generation): request for request in requests}
        result = render_batch(
            self.renderer, requests, self.spec.generation, self._flushed(keys), checked=True
        )
        self.outcome.rendered += result.rendered
        self.outcome.skipped += result.skipped
        self.outcome.failed += result.failed

    def _flushed(self, keys: Mapping[str, TileRequest]) -> FlushHook:
        def hook(written: int, completions: Sequence[Completion]) -> None:
            for completion in completions:
                self.claimed.discard(completion.key)  # announced: the marker is gone
                if completion.error is not None:
                    request = keys.get(completion.key)
                    self._error(request, completion.error)
            lease = time.time() + self.settings.job_lease
            if not self.store.progress_batch(self.job_id, self.batch.index, written, lease):
                raise JobCancelled(self.job_id)

        return hook

    def _error(self, request: TileRequest | None, error: dict[str, Any]) -> None:
        if len(self.outcome.errors) >= 5:
            return
        sample: dict[str, Any] = {"batch": self.batch.index, "error": error}
        if request is not None:
            sample.update(z=request.z, x=request.x, y=request.y, frame=request.frame)
        self.outcome.errors.append(sample)

    def _claim(self, keys: list[str]) -> tuple[list[str], list[str]]:
        """``(mine, others)`` among the keys not cached yet: mine are the ones whose
        in-flight marker this batch took (or had taken in an earlier attempt) and are
        not cached, others are in flight elsewhere. Markers first, then the cache: a
        render that ended just before the claim has its tile cached by then, so a tile
        held here and absent from the cache is rendered by nobody else (and
        render_batch need not look again)."""
        if not keys:
            return [], []
        held = claim_many(self.renderer.state, keys, self.owner, self.settings.inflight_ttl)
        ours = [key for key, mine in zip(keys, held, strict=True) if mine]
        others = [key for key, mine in zip(keys, held, strict=True) if not mine]
        cached = self.renderer.cache.exists_many(ours)
        done = [key for key, found in zip(ours, cached, strict=True) if found]
        if done:
            announce_many(self.renderer.state, [Completion(key) for key in done])
            self.outcome.skipped += len(done)
        mine = [key for key, found in zip(ours, cached, strict=True) if not found]
        self.claimed.update(mine)
        return mine, others

    def release(self) -> None:
        """Drop the markers this batch took but never announced (it stopped early), so
        that viewers waiting on those tiles render them instead of timing out."""
        if not self.claimed:
            return
        try:
            release_owned(self.renderer.state, list(self.claimed), self.owner)
        except redis.RedisError:
            log.warning("could not release the markers of batch %d", self.batch.index)
        self.claimed.clear()

    # -- the thumbnail ----------------------------------------------------------------------
    def _thumbnail(self) -> None:
        request = self.batch.thumbnail_request(self.spec)
        key = request.key(self.spec.generation)
        mine, others = self._claim([key])
        if others:
            self.outcome.skipped += 1
        if not mine:
            return
        try:
            data = self.renderer.render_thumbnail(request, self.spec.generation)
        except Exception as exc:
            completion = failure(key, exc)
            self.outcome.failed += 1
            assert completion.error is not None
            self._error(None, completion.error)
        else:
            self.renderer.cache.put(key, data)
            completion = Completion(key)
            self.outcome.rendered += 1
            self.renderer.flush_counters(**{counters.THUMBNAILS_RENDERED: 1})
        announce(self.renderer.state, completion)
        self.claimed.discard(key)
        lease = time.time() + self.settings.job_lease
        if not self.store.progress_batch(
            self.job_id, self.batch.index, self.outcome.rendered, lease
        ):
            raise JobCancelled(self.job_id)


# --- the driver ------------------------------------------------------------------------

Send = Callable[[str, dict[str, Any]], None]


class JobDriver:
    """Advances every running job; only the holder of the driver lock acts."""

    def __init__(self, store: JobStore, settings: Settings, send: Send, owner: str) -> None:
        self.store = store
        self.settings = settings
        self.send = send
        self.owner = owner
        self.plans: dict[str, Plan] = {}

    def step(self) -> bool:
        """One pass over the running jobs; False when another driver holds the lock."""
        if not self.store.hold_driver_lock(self.owner, DRIVER_LOCK_TTL):
            return False
        active = self.store.active()
        for job_id in active:
            try:
                self.advance(job_id, time.time())
            except UnknownJob:
                self.store.state.srem(ACTIVE_KEY, job_id)
        for gone in set(self.plans) - set(active):
            del self.plans[gone]
        return True

    def _plan(self, job_id: str, spec: JobSpec) -> Plan:
        found = self.plans.get(job_id)
        if found is None:
            found = self.plans[job_id] = plan(spec)
        return found

    def advance(self, job_id: str, now: float) -> None:
        record = self.store.get(job_id)
        if record.state != RUNNING:
            self.store.state.srem(ACTIVE_KEY, job_id)
            return
        the_plan = self._plan(job_id, record.spec)
        for index in self.store.expired_leases(job_id, now):
            if self.store.is_settled(job_id, index):
                self.store.drop_lease(job_id, index)
            elif self.store.attempts(job_id, index) >= self.settings.job_max_attempts:
                self._give_up(job_id, the_plan.batch(index))
            else:
                log.info("job %s: batch %d's lease expired; dispatching it again", job_id, index)
                self._dispatch(job_id, index, now)
        in_flight = len(self.store.in_flight(job_id))
        cursor = record.next
        while in_flight < self.settings.job_inflight_batches and cursor < the_plan.total_batches:
            if the_plan.waits_before(cursor) and self.store.settled_count(job_id) < cursor:
                break  # a phase boundary: the batches before it are not all settled
            index = self.store.advance_cursor(job_id)
            cursor = index + 1
            if index >= the_plan.total_batches:
                break
            if self.store.is_settled(job_id, index):
                continue
            self._dispatch(job_id, index, now)
            in_flight += 1
        finished = cursor >= the_plan.total_batches and not self.store.in_flight(job_id)
        if finished and self.store.finish(job_id, self.settings.job_retention):
            done = self.store.get(job_id)
            log.info(
                "job %s finished: %d done (%d skipped), %d failed of %d tiles",
                job_id, done.done, done.skipped, done.failed, done.total,
            )  # fmt: skip

    def _dispatch(self, job_id: str, index: int, now: float) -> None:
        # The lease is recorded before the send: a driver killed in between leaves a
        # lease that expires and is dispatched again, never a batch nobody tracks.
        attempt = self.store.dispatched(job_id, index, now + self.settings.job_queue_lease)
        self.send(TASK_PRECACHE_BATCH, precache_batch_payload(job_id, index, attempt))

    def _give_up(self, job_id: str, batch: Batch) -> None:
        error = RenderFailed(
            "the batch was lost (its worker stopped) on every attempt"
        ).to_payload()
        log.warning("job %s: batch %d given up after its attempts", job_id, batch.index)
        self.store.add_errors(job_id, [{"batch": batch.index, "z": batch.z, "error": error}])
        self.store.settle(job_id, batch.index, done=0, skipped=0, failed=batch.size)


class DriverThread:
    """The driver's loop, in a daemon thread of a worker's parent process."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self.state = connect(settings.state_url, **settings.redis_timeouts)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        self.driver = JobDriver(JobStore(self.state), settings, send, owner)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="tilecast-job-driver", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self.driver.store.release_driver_lock(self.driver.owner)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            acting = False
            try:
                acting = self.driver.step()
                if acting:
                    # The next step at once when a job comes or a batch settles (a
                    # phase boundary, a free slot, the job's end), else a period later.
                    self.driver.store.wait_for_news(DRIVER_PERIOD)
            except (redis.RedisError, TilecastError, OSError) as exc:
                log.warning("job driver: %s", exc)
                acting = False
            except Exception:
                log.exception("job driver step failed")
                acting = False
            if not acting:
                self.stopping.wait(DRIVER_PERIOD)


_driver: DriverThread | None = None


def _send_bulk(name: str, payload: dict[str, Any]) -> None:
    app.send_task(name, args=[payload], queue=QUEUE_BULK)


@worker_ready.connect
def _start_driver(sender: Any = None, **_kwargs: Any) -> None:
    """Every worker that serves the bulk queue runs a driver; the lock elects one."""
    global _driver
    try:
        queues = set(sender.app.amqp.queues.consume_from)
    except AttributeError:
        queues = {QUEUE_BULK}
    if QUEUE_BULK not in queues or _driver is not None:
        return
    _driver = DriverThread(get_settings(), _send_bulk)
    _driver.start()
    log.info("job driver started")


@worker_shutdown.connect
def _stop_driver(**_kwargs: Any) -> None:
    global _driver
    if _driver is not None:
        _driver.stop()
        _driver = None
