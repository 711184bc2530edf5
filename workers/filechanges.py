"""Files that change under a registration: noticed when a worker opens them and, while
they are open, at most once per ``Settings.file_check_interval``.

A render of generation *g* reads the file only if the registry's record is still the
one stored under *g* and the file opened is the one that record describes (its
identity, common/fileidentity.py). Otherwise the file changed (renamed over, rewritten
in place, truncated, deleted) and the first worker to notice stores a new record under
a new generation (``SourceRegistry.replace_if``, so many noticing workers store one):

- a file that still opens: described afresh, metadata and tiles from it alone; the
  render of *g* fails with SourceChanged (503, retry): asked again, it is rendered
  under the new generation, never under *g*;
- a file that is gone or no longer opens: a record marked ``unreadable``; every
  answer about the source is a 410 (SourceGone) until it is registered again.

Every cached key holds the generation, so the tiles, thumbnails, band statistics and
metadata of *g* are never taken for the new generation's.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from tilecast.common.errors import SourceChanged, SourceGone, TilecastError, UnsupportedImage
from tilecast.common.fileidentity import Identity, same_file, stat_identity
from tilecast.common.girder import girder_item_id
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.remoteurls import is_remote_path
from tilecast.common.settings import Settings
from tilecast.workers.describe import (
    OpenedPath,
    confined,
    describe_file,
    open_path,
    registered,
    remote_identity,
)
from tilecast.workers.sources import ImageSource

log = logging.getLogger(__name__)

DELETED = "the source's file was deleted"


def open_registered(
    registry: SourceRegistry, source_id: str, generation: int, settings: Settings
) -> OpenedPath:
    """The file of ``source_id`` as registered under ``generation``; SourceChanged or
    SourceGone when it is not that file any more (see the module's text)."""
    record = registry.get(source_id)  # UnknownSource when it was forgotten
    check_record(record, generation)
    try:
        opened = open_path(record.path, settings, generation)
    except FileNotFoundError:
        raise _refreshed(registry, record, settings) from None
    except UnsupportedImage:
        if _remote_replaced(record, settings):
            raise _refreshed(registry, record, settings) from None
        if (
            record.identity is None
            or _is_remote(record.path)
            or escapes_roots(record.path, settings)
            or unchanged(record.path, record.identity)
        ):
            raise  # the registered file itself fails (a corrupt file is no change)
        # The file opened when it was registered and no longer does: it was truncated
        # or rewritten since.
        raise _refreshed(registry, record, settings) from None
    if record.identity is not None and not same_file(opened.identity, record.identity):
        _close_quietly(opened.source)
        raise _refreshed(registry, record, settings)
    return opened


def check_record(record: SourceRecord, generation: int) -> None:
    if record.unreadable is not None:
        raise SourceGone(record.unreadable)
    # Only an older generation is refused: a record and its generation move together
    # (common/registry.py), so a newer one names no other file.
    if record.generation is not None and generation < record.generation:
        raise SourceChanged(
            f"source {record.id} changed: generation {generation} is no longer served, "
            f"{record.generation} is; ask again"
        )


def still_current(opened: OpenedPath) -> bool:
    """Whether an open local file is still what its path names (one ``stat``); a remote
    file is checked when it is opened only (its registration names its version)."""
    if opened.replaced is not None:
        return not opened.replaced()
    if opened.local_path is None:
        return True
    return unchanged(opened.local_path, opened.identity)


def unchanged(path: str, identity: Identity | None) -> bool:
    """Whether the file at ``path`` is still ``identity`` (None: still missing); True
    when a failing ``stat`` cannot tell."""
    try:
        return same_file(stat_identity(path), identity)
    except OSError as exc:
        log.warning("cannot stat %s to check it: %s", path, exc)
        return True


def refresh_if_changed(
    registry: SourceRegistry, record: SourceRecord, settings: Settings
) -> SourceChanged | SourceGone | None:
    """Register ``record``'s file again when it is a local file that changed since it
    was registered (or, for a record marked unreadable, since it was found so: a file
    rewritten, or back after a deletion); what a render of the record's generation
    would now end with."""
    if (
        (record.identity is None and record.unreadable is None)  # an older tilecast's
        or _is_remote(record.path)
        or escapes_roots(record.path, settings)
        or unchanged(record.path, record.identity)
    ):
        return None
    return _refreshed(registry, record, settings)


def escapes_roots(path: str, settings: Settings) -> bool:
    """Whether ``path`` now leads out of the source roots (swapped for a symlink):
    never read, never registered again; its renders are refused as they are."""
    try:
        confined(path, settings)
    except UnsupportedImage:
        return True
    except FileNotFoundError:
        return False
    return False


def _refreshed(
    registry: SourceRegistry, record: SourceRecord, settings: Settings
) -> SourceChanged | SourceGone:
    """Register what is at the record's path now under a new generation (unless another
    process did first); the error the render of the old generation ends with."""
    expect = record.generation if record.generation is not None else registry.generation(record.id)
    if expect is None:
        raise SourceChanged(f"source {record.id} is being registered again; ask again")
    local = not _is_remote(record.path)
    # Taken before describing: a file still being written when the describe fails
    # changes again after this, and the next check describes it again.
    before = _identity_or_none(record.path) if local else None
    try:
        described = describe_file(record.path, settings)
    except UnsupportedImage as exc:
        gone = local and before is None
        reason = (
            DELETED
            if gone
            else f"the source's file changed and can no longer be read: {exc.message}"
        )
        fresh = replace(record, identity=before, unreadable=reason)
    else:
        fresh = replace(
            record,
            name=described.name,
            metadata=described.metadata,
            identity=described.identity,
            unreadable=None,
        )
    stored, generation = registry.replace_if(fresh, expect)
    if stored:
        if fresh.unreadable is None:
            registered(record.path, settings, generation)
        log.warning(
            "source %s changed on disk: generation %s -> %s%s",
            record.id,
            expect,
            generation,
            f" ({fresh.unreadable})" if fresh.unreadable else "",
        )
    current = registry.get(record.id)
    if current.unreadable is not None:
        return SourceGone(current.unreadable)
    return SourceChanged(
        f"source {record.id} changed: its file is registered again as generation "
        f"{generation}; ask again"
    )


def _remote_replaced(record: SourceRecord, settings: Settings) -> bool:
    """Whether a URL source's object is no longer the one registered (replaced by one
    that no reader opens: truncated, or another file)."""
    if record.identity is None or not is_remote_path(record.path):
        return False
    try:
        now = remote_identity(record.path, settings)
    except TilecastError:
        return False  # the store's own answer (404, 503) is the render's error
    return now is not None and not same_file(now, record.identity)


def _is_remote(path: str) -> bool:
    """A Girder item or a URL source: its version is checked when it is opened (its
    identity), never by ``stat``."""
    return girder_item_id(path) is not None or is_remote_path(path)


def _identity_or_none(path: str) -> Identity | None:
    try:
        return stat_identity(path)
    except OSError:
        return None


def _close_quietly(source: ImageSource) -> None:
    try:
        source.close()
    except Exception:
        log.exception("closing a changed source failed")
