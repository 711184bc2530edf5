"""Opening a registered source's file, and ``describe_path``: the large_image-shaped
metadata of an image file.

A record's path is a local file or ``girder://item/{id}`` (read through
workers/girder/). Used in-process by ``tilecast add``, by the
``tilecast.describe_source`` task and by the Renderer.
"""

from __future__ import annotations

import os
from typing import Any

from common.errors import SourceRefused, UnsupportedImage
from common.girder import girder_item_id
from common.localpaths import resolve_under_roots
from common.settings import Settings, get_settings
from workers.sources import ImageSource, open_source


def open_path(
    path: str, settings: Settings, generation: int | None = None
) -> tuple[ImageSource, str]:
    """The source at a record's ``path`` and the name it is shown under (a Girder
    item's name, else the file's base name). ``generation``: the registration a render
    reads (None to describe the file as it is now)."""
    item_id = girder_item_id(path)
    if item_id is None:
        return open_source(confined(path, settings), settings), os.path.basename(path)
    # Imported here: a tilecast without Girder sources needs no girder-client.
    from workers.girder import open_girder_file

    opened = open_girder_file(item_id, settings, generation)
    return open_source(opened.file, settings), opened.item_name


def confined(path: str, settings: Settings) -> str:
    """The real path of a local source's file, checked again against the source roots
    each time it is opened: the file may have been swapped for a symlink (or a
    directory above it moved) since the api checked it at registration. A worker
    without roots (in-process tools, tests) reads the path as it is."""
    if not settings.source_roots:
        return path
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
        from workers.girder import remember_registration

        remember_registration(item_id, settings, generation)


def describe_named(path: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(name, metadata) of the image at a record's ``path``."""
    source, name = open_path(path, settings)
    with source:
        return name, source.metadata


def describe_path(path: str, settings: Settings | None = None) -> dict[str, Any]:
    """``levels sizeX sizeY tileWidth tileHeight magnification mm_x mm_y dtype
    bandCount``, plus, for multi-frame files (and every OME-TIFF), ``frames`` and, when
    the file has axes or channel names, ``IndexRange``, ``IndexStride``, ``channels``
    and ``channelmap`` -- equal to large_image's ``getMetadata()`` for the same file.
    Raises common.errors.UnsupportedImage for files no reader opens."""
    return describe_named(path, settings or get_settings())[1]
