"""Pre-rendering jobs: submit (validated against the source's metadata, 400s up front),
list, describe, cancel. The records live in the state Redis (common/jobstore.py); the worker
pool's job driver runs them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tilecast.api.services import Services
from tilecast.common.errors import UnknownJob
from tilecast.common.jobspec import auto_job_spec, parse_job_request
from tilecast.common.jobstore import JobStore
from tilecast.common.query import MAX_LISTED

log = logging.getLogger(__name__)


def submit(svc: Services, source_id: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(job, created)``: a new job, or the running job an equal request started."""
    record = svc.registry.get(source_id)  # UnknownSource: 404
    generation = svc.registry.generation(source_id) or 0
    spec = parse_job_request(source_id, args, record.metadata, generation, svc.settings)
    job, created = JobStore(svc.state).submit(spec)
    return job.to_json(), created


def list_jobs(svc: Services, limit: int) -> list[dict[str, Any]]:
    return [record.to_json() for record in JobStore(svc.state).list(min(limit, MAX_LISTED))]


def describe(svc: Services, job_id: str) -> dict[str, Any]:
    return JobStore(svc.state).describe(job_id)  # UnknownJob: 404


def cancel(svc: Services, job_id: str) -> dict[str, Any]:
    """Cancel a running job; a job that already ended is answered as it is."""
    store = JobStore(svc.state)
    store.cancel(job_id, svc.settings.job_retention)
    return store.describe(job_id)


def cancel_source_jobs(svc: Services, source_id: str) -> int:
    """Cancel the running jobs of a source (it is being deleted); how many."""
    store = JobStore(svc.state)
    cancelled = 0
    for job_id in store.active():
        try:
            if store.get(job_id).spec.source == source_id:
                store.cancel(job_id, svc.settings.job_retention)
                cancelled += 1
        except UnknownJob:
            continue  # ended and expired meanwhile
    return cancelled


def precache_new_source(svc: Services, source_id: str) -> None:
    """The job every newly registered source gets (thumbnail, coarsest levels), when
    ``auto_precache`` is on. Registering must not fail because of it."""
    if not svc.settings.auto_precache:
        return
    try:
        record = svc.registry.get(source_id)
        generation = svc.registry.generation(source_id) or 0
        spec = auto_job_spec(source_id, record.metadata, generation, svc.settings)
        JobStore(svc.state).submit(spec)
    except Exception:
        log.exception("could not submit the pre-rendering job of source %s", source_id)
