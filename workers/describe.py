"""Opening a registered source's file, and ``describe_path``: the large_image-shaped
metadata of an image file.

A record's path is a local file, ``girder://item/{id}`` (read through
workers/girder/) or a URL source (workers/remote/, common/remoteurls.py); either way
the file is an ImageFile, and the reader registry (workers/sources/registry.py) picks
its reader by content. Used in-process by
``tilecast add``, by the ``tilecast.describe_source`` task and by the Renderer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tilecast.common.errors import SourceRefused, UnsupportedImage
from tilecast.common.fileidentity import Identity, folder_identity, local_identity
from tilecast.common.girder import girder_item_id
from tilecast.common.localpaths import resolve_under_roots
from tilecast.common.remoteurls import DICOMWEB_SCHEMES, parse_locator
from tilecast.common.settings import Settings, get_settings
from tilecast.workers.sources import ImageSource, open_source
from tilecast.workers.sources.files import open_local


@dataclass
class OpenedPath:
    """A record's file, opened: its reader, the name it is shown under (a Girder item's
    name, else the file's base name), the identity of the file read
    (common/fileidentity.py) and, for a local file, the path to ``stat`` again to
    notice a change while it is open."""

    source: ImageSource
    name: str
    identity: Identity
    local_path: str | None
    # For a remote object: whether a read found it replaced since it was opened.
    replaced: Callable[[], bool] | None = None


def open_path(path: str, settings: Settings, generation: int | None = None) -> OpenedPath:
    """The source at a record's ``path``. ``generation``: the registration a render
    reads (None to describe the file as it is now). FileNotFoundError when a local
    file is no longer there (a deleted source, not a bad request)."""
    remote = parse_locator(path)
    if remote is not None and remote.url.scheme in DICOMWEB_SCHEMES:
        # Imported here: a tilecast without DICOMweb sources needs no dicomweb-client.
        from tilecast.workers.sources.dicomweb import DicomWebSeries

        series = DicomWebSeries.opened(remote, settings)
        return OpenedPath(series, series.series.series, series.identity, None)
    if remote is not None:
        # Imported here: a tilecast without URL sources needs no object-store client.
        from tilecast.workers.remote.opening import open_remote

        found = open_remote(remote, settings)
        source = open_source(found.file, settings)
        return OpenedPath(source, found.name, found.identity, None, found.replaced)
    item_id = girder_item_id(path)
    if item_id is None:
        real = confined(path, settings)
        try:
            file = open_local(real)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
        # The identity of the bytes the reader reads: taken from the open descriptor (a
        # directory's covers the files in it too: common/fileidentity.py).
        info = os.fstat(file.fileno())
        identity = folder_identity(real, info) if file.is_directory else local_identity(info)
        return OpenedPath(open_source(file, settings), os.path.basename(path), identity, real)
    # Imported here: a tilecast without Girder sources needs no girder-client.
    from tilecast.workers.girder import open_girder_file

    opened = open_girder_file(item_id, settings, generation)
    info = opened.info
    identity = {"file_id": info.file_id, "version": info.version, "size": info.size}
    return OpenedPath(open_source(opened.file, settings), opened.item_name, identity, None)


def remote_identity(path: str, settings: Settings) -> Identity | None:
    """The identity of the object a URL source's ``path`` names now (None for another
    kind of path): one HEAD, no reader."""
    remote = parse_locator(path)
    if remote is None:
        return None
    if remote.url.scheme in DICOMWEB_SCHEMES:
        from tilecast.workers.sources.dicomweb import series_identity

        return series_identity(remote, settings)
    from tilecast.workers.remote.opening import open_remote

    found = open_remote(remote, settings)
    found.file.close()
    return found.identity


def confined(path: str, settings: Settings) -> str:
    """The real path of a local source's file, checked again against the source roots
    each time it is opened: the file may have been swapped for a symlink (or a
    directory above it moved) since the api checked it at registration. A worker
    without roots (in-process tools, tests) reads the path as it is.
    FileNotFoundError when nothing is there any more."""
    if not settings.source_roots:
        return path
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, "the source's file was deleted", path)
    try:
        return resolve_under_roots(path, settings.source_roots)
    except SourceRefused as exc:
        # Not the request's fault, nor the client's to know where the file went.
        raise UnsupportedImage(f"the source's file cannot be read: {exc.message}") from None


def registered(path: str, settings: Settings, generation: int) -> None:
    """The file at ``path`` was just described and registered under ``generation``:
    a Girder item remembers which file that generation reads."""
    item_id = girder_item_id(path)
    if item_id is not None:
        from tilecast.workers.girder import remember_registration

        remember_registration(item_id, settings, generation)


def describe_named(path: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(name, metadata) of the image at a record's ``path``."""
    described = describe_file(path, settings)
    return described.name, described.metadata


@dataclass(frozen=True)
class Described:
    name: str
    metadata: dict[str, Any]
    identity: Identity


def describe_file(path: str, settings: Settings) -> Described:
    """Name, metadata and identity of the file at a record's ``path``, all from one
    opening of it (UnsupportedImage when it is missing or no reader opens it)."""
    try:
        opened = open_path(path, settings)
    except FileNotFoundError:
        raise UnsupportedImage("cannot open the file: No such file or directory") from None
    with opened.source:
        return Described(opened.name, opened.source.metadata, opened.identity)


def describe_path(path: str, settings: Settings | None = None) -> dict[str, Any]:
    """``levels sizeX sizeY tileWidth tileHeight magnification mm_x mm_y dtype
    bandCount``, plus, for multi-frame files (and every OME-TIFF), ``frames`` and, when
    the file has axes or channel names, ``IndexRange``, ``IndexStride``, ``channels``
    and ``channelmap`` -- equal to large_image's ``getMetadata()`` for the same file.
    Raises common.errors.UnsupportedImage for files no reader opens."""
    return describe_named(path, settings or get_settings())[1]
