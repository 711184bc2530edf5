"""Girder items as sources: registered under their own id on first use (``girder``
access mode), and the calls tilecast's Girder plugin makes when an upload completes
(register, re-register a replaced file, pre-render) or a file or item is deleted."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tilecast.api.handlers.precache_jobs import cancel_source_jobs, precache_new_source
from tilecast.api.handlers.sources import describe, record_or_none
from tilecast.api.services import Services
from tilecast.common.errors import BadRequest, UnknownSource
from tilecast.common.girder import girder_source_path, is_object_id
from tilecast.common.jobspec import parse_int_list, parse_job_request
from tilecast.common.jobstore import JobStore

log = logging.getLogger(__name__)

# Levels a plugin may name (pyramids of 10^11 pixels have about 20).
MAX_LEVEL = 63


def ensure_registered(svc: Services, item_id: str) -> None:
    """Register a Girder item the first time anyone may see it; later calls cost one
    memo lookup. A worker resolves the item to its image file (404 for unknown items,
    415 for items whose file is no image format, 422 for an image that cannot be read)."""
    try:
        svc.generations.get(item_id)
    except UnknownSource:
        _check_item_id(item_id)
        describe(svc, item_id, girder_source_path(item_id))
        precache_new_source(svc, item_id)


def register_item(
    svc: Services, item_id: str, args: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """What the plugin asks when an upload completes: describe the item (again, with a
    new generation, when it was known: its file was replaced) and pre-render its
    thumbnail and ``levels``. ``(body, created)``."""
    _check_item_id(item_id)
    levels = args.get("levels")
    requested = None if levels in (None, "") else parse_int_list(levels, "levels", 0, MAX_LEVEL)
    thumbnail = args.get("thumbnail", True)
    if not isinstance(thumbnail, bool):
        raise BadRequest("thumbnail must be true or false", parameter="thumbnail")
    # A known item's file was replaced: it is described again under a new generation,
    # while the old one is served until then (never a 404 in between).
    generation = svc.registry.generation(item_id) if record_or_none(svc, item_id) else None
    known = generation is not None
    cancelled = cancel_source_jobs(svc, item_id) if known else 0
    record = describe(svc, item_id, girder_source_path(item_id), after=generation)
    svc.generations.forget(item_id)
    job = _precache(svc, item_id, record.metadata, requested, thumbnail)
    body = {
        **record.summary(),
        "generation": svc.registry.generation(item_id),
        "job": job,
        "replaced": known,
        "jobsCancelled": cancelled,
    }
    return body, not known


def forget_item(svc: Services, item_id: str) -> dict[str, Any]:
    """The item or its file was deleted: never serve its tiles again. Forgetting an item
    tilecast never saw is not an error (the plugin reports every deletion)."""
    _check_item_id(item_id)
    known = record_or_none(svc, item_id) is not None
    cancelled = _forget(svc, item_id) if known else 0
    return {"id": item_id, "deleted": known, "jobsCancelled": cancelled}


def _forget(svc: Services, item_id: str) -> int:
    svc.registry.remove(item_id)
    svc.generations.forget(item_id)
    return cancel_source_jobs(svc, item_id)


def _precache(
    svc: Services,
    item_id: str,
    metadata: Mapping[str, Any],
    levels: tuple[int, ...] | None,
    thumbnail: bool,
) -> str | None:
    """Submit the plugin's pre-rendering job (levels past the image's are dropped);
    the server's default job when the plugin named no levels."""
    if levels is None:
        precache_new_source(svc, item_id)
        return None
    present = [z for z in levels if z < int(metadata["levels"])]
    if not present and not thumbnail:
        return None
    generation = svc.registry.generation(item_id) or 0
    args = {"levels": present or [0], "thumbnail": thumbnail}
    spec = parse_job_request(item_id, args, metadata, generation, svc.settings)
    job, _created = JobStore(svc.state).submit(spec)
    return job.id


def _check_item_id(item_id: str) -> None:
    if not is_object_id(item_id):
        raise UnknownSource.girder_item(item_id)
