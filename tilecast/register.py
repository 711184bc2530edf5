"""Registering a local image in-process (``tilecast add``, ``tilecast up``)."""

from __future__ import annotations

import os

from tilecast.common.jobspec import auto_job_spec
from tilecast.common.jobstore import JobStore
from tilecast.common.localpaths import resolve_under_roots, source_id_for_path
from tilecast.common.redisconn import connect
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings


def register_path(path: str, settings: Settings) -> SourceRecord:
    """Describe the file and store its record. Registering a path again re-reads it and
    bumps its generation, so tiles of an older version of the file are never served."""
    # Imported here: the command line's other commands must not need libvips.
    from tilecast.workers.describe import describe_file

    real = resolve_under_roots(path, settings.source_roots)
    described = describe_file(real, settings)
    record = SourceRecord(
        id=source_id_for_path(real),
        path=real,
        name=os.path.basename(real),
        metadata=described.metadata,
        identity=described.identity,
    )
    state = connect(settings.state_url)
    try:
        registry = SourceRegistry(state)
        registry.add(record)
        if settings.auto_precache:
            # Its thumbnail and coarsest levels, on the bulk pool (an equal running job
            # is reused, so registering twice starts one job).
            generation = registry.generation(record.id) or 0
            JobStore(state).submit(auto_job_spec(record.id, record.metadata, generation, settings))
    finally:
        state.close()
    return record
