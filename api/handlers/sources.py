"""Registering and listing sources. A worker opens each new file (the api has no
libvips); the api waits for it through the same single-flight as a tile."""

from __future__ import annotations

from typing import Any

from api.handlers.jobs import precache_new_source
from api.services import Services
from common.errors import UnknownSource
from common.localpaths import resolve_under_roots, source_id_for_path
from common.protocol import TASK_DESCRIBE_SOURCE, describe_source_payload
from common.registry import SourceRecord, describe_key


def register(svc: Services, path: str) -> tuple[dict[str, Any], bool]:
    """``({"id": ..., summary}, created)`` for a local file below the source roots."""
    real = resolve_under_roots(path, svc.settings.source_roots)
    source_id = source_id_for_path(real)
    existing = _record_or_none(svc, source_id)
    if existing is not None:
        return existing.summary(), False
    done = describe_key(source_id)
    payload = describe_source_payload(source_id, real, done)
    record = svc.dispatcher.fetch(
        done,
        lookup=lambda: _record_or_none(svc, source_id),
        send=lambda: svc.sender.send(TASK_DESCRIBE_SOURCE, payload),
    )
    # Pre-render its thumbnail and coarsest levels on the bulk pool (issue 5).
    precache_new_source(svc, source_id)
    return record.summary(), True


def list_sources(svc: Services) -> list[dict[str, Any]]:
    return [record.summary() for record in svc.registry.all()]


def _record_or_none(svc: Services, source_id: str) -> SourceRecord | None:
    try:
        return svc.registry.get(source_id)
    except UnknownSource:
        return None
