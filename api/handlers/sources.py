"""Registering and listing sources. A worker opens each new file (the api has no
libvips); the api waits for it through the same single-flight as a tile."""

from __future__ import annotations

from typing import Any

from tilecast.api.handlers.precache_jobs import cancel_source_jobs, precache_new_source
from tilecast.api.services import Services
from tilecast.common.errors import UnknownSource
from tilecast.common.fileidentity import same_file, stat_identity
from tilecast.common.keys import describe_key
from tilecast.common.localpaths import resolve_under_roots, source_id_for_path
from tilecast.common.registry import SourceRecord
from tilecast.common.remoteurls import remote_source
from tilecast.common.taskprotocol import TASK_DESCRIBE_SOURCE, describe_source_payload


def register(svc: Services, path: str) -> tuple[dict[str, Any], bool]:
    """``({"id": ..., summary}, created)`` for a local file below the source roots.
    A path registered already is described again, under a new generation, when its
    file is not the one registered (replaced, rewritten, or gone and back)."""
    real = resolve_under_roots(path, svc.settings.source_roots)
    source_id = source_id_for_path(real)
    existing = record_or_none(svc, source_id)
    if existing is not None:
        if not _changed(existing, real):
            return existing.summary(), False
        return _refresh(svc, existing), False
    record = describe(svc, source_id, real)
    svc.generations.forget(source_id)  # a memo of a forgotten registration's generation
    # Pre-render its thumbnail and coarsest levels on the bulk pool (issue 5).
    precache_new_source(svc, source_id)
    return record.summary(), True


def register_url(svc: Services, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``({"id": ..., summary}, created)`` for a URL under an allowed prefix
    (common/remoteurls.py: 400 otherwise, before anything is fetched). The object's
    version (ETag) is the record's identity: a worker that opens a replaced object
    describes it again under a new generation (workers/filechanges.py). Registered
    again while it is unreadable (it was gone, or could not be read), it is described
    afresh."""
    settings = svc.settings
    source = remote_source(body, settings.remote_allowed, settings.remote_endpoint_urls)
    source_id = source.source_id
    existing = record_or_none(svc, source_id)
    if existing is not None:
        if existing.unreadable is None:
            return existing.summary(), False
        return _refresh(svc, existing), False
    record = describe(svc, source_id, source.locator())
    svc.generations.forget(source_id)
    precache_new_source(svc, source_id)
    return record.summary(), True


def _changed(record: SourceRecord, path: str) -> bool:
    """Whether the file at ``path`` is not the one ``record`` describes (a record of
    an older tilecast, without an identity, is taken as it is)."""
    if record.unreadable is not None:
        return True
    if record.identity is None:
        return False
    try:
        return not same_file(stat_identity(path), record.identity)
    except OSError:
        return False  # a stat that fails says nothing about the file


def _refresh(svc: Services, record: SourceRecord) -> dict[str, Any]:
    """Describe a changed file again: its new metadata under a new generation, the
    older generation's jobs cancelled and its tiles never served again."""
    generation = svc.registry.generation(record.id)
    cancelled = cancel_source_jobs(svc, record.id)
    fresh = describe(svc, record.id, record.path, after=generation)
    svc.generations.forget(record.id)
    precache_new_source(svc, record.id)
    return {
        **fresh.summary(),
        "generation": svc.registry.generation(record.id),
        "refreshed": True,
        "jobsCancelled": cancelled,
    }


def describe(svc: Services, source_id: str, path: str, *, after: int | None = None) -> SourceRecord:
    """Have a worker open ``path`` and store its record under ``source_id`` (the api has
    no libvips); however many ask at once, one worker describes it. ``after``: the
    generation of a record whose file changed, to be described again."""
    done = describe_key(source_id)
    payload = describe_source_payload(source_id, path, done, after=after)

    def lookup() -> SourceRecord | None:
        if not svc.registry.is_current(source_id, after):
            return None
        return record_or_none(svc, source_id)

    return svc.dispatcher.fetch(
        done, lookup=lookup, send=lambda: svc.sender.send(TASK_DESCRIBE_SOURCE, payload)
    )


def remove(svc: Services, source_id: str) -> dict[str, Any]:
    """Forget a source: its tiles are never served again (its generation moves on; api
    processes notice within ``generation_ttl``), its running pre-rendering jobs are
    cancelled, and its cached tiles are left to the cache keeper, TTL and LRU, which
    retire them as the tiles of a source nobody views. Requests in flight finish with
    their tile or a 404; none fails otherwise."""
    if not svc.registry.remove(source_id):
        raise UnknownSource.of(source_id)
    svc.generations.forget(source_id)
    return {"id": source_id, "deleted": True, "jobsCancelled": cancel_source_jobs(svc, source_id)}


def list_sources(svc: Services) -> list[dict[str, Any]]:
    return [record.summary() for record in svc.registry.all()]


def record_or_none(svc: Services, source_id: str) -> SourceRecord | None:
    try:
        return svc.registry.get(source_id)
    except UnknownSource:
        return None
