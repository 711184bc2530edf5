"""``describe_path``: the large_image-shaped metadata of an image file.

Used in-process by ``tilecast add`` and by the ``tilecast.describe_source`` task.
"""

from __future__ import annotations

from typing import Any

from common.settings import Settings, get_settings
from workers.sources import open_source


def describe_path(path: str, settings: Settings | None = None) -> dict[str, Any]:
    """``levels sizeX sizeY tileWidth tileHeight magnification mm_x mm_y dtype
    bandCount`` (plus ``frames`` for multi-frame files). Raises
    common.errors.UnsupportedImage for files no reader opens."""
    with open_source(path, settings or get_settings()) as source:
        return source.metadata
