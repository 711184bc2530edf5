"""``describe_path``: the large_image-shaped metadata of an image file.

Used in-process by ``tilecast add`` and by the ``tilecast.describe_source`` task.
"""

from __future__ import annotations

from typing import Any

from common.settings import Settings, get_settings
from workers.sources import open_source


def describe_path(path: str, settings: Settings | None = None) -> dict[str, Any]:
    """``levels sizeX sizeY tileWidth tileHeight magnification mm_x mm_y dtype
    bandCount``, plus, for multi-frame files (and every OME-TIFF), ``frames`` and, when
    the file has axes or channel names, ``IndexRange``, ``IndexStride``, ``channels``
    and ``channelmap`` -- equal to large_image's ``getMetadata()`` for the same file.
    Raises common.errors.UnsupportedImage for files no reader opens."""
    with open_source(path, settings or get_settings()) as source:
        return source.metadata
