"""Image readers behind one small interface (workers/sources/base.py).

``open_source`` picks the reader: TIFF files go to the TIFF reader (native pyramid
levels, JPEG pass-through) unless large_image's TIFF source would not take them,
in which case they, like every other format libvips knows, go to the generic
libvips reader.
"""

from __future__ import annotations

import logging
import os

from common.errors import UnsupportedImage
from common.settings import Settings
from workers.sources.base import ImageSource
from workers.sources.tiff import NotATiffPyramid, TiffSource
from workers.sources.vipsimage import VipsImageSource

log = logging.getLogger(__name__)

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

__all__ = ["ImageSource", "open_source"]


def open_source(path: str, settings: Settings) -> ImageSource:
    """Open ``path`` with the reader that fits it; UnsupportedImage when none does."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
    if not os.path.isfile(path):
        raise UnsupportedImage("not a regular file")
    if magic in TIFF_MAGICS:
        try:
            return TiffSource(path, settings)
        except NotATiffPyramid as exc:
            log.debug("%s: %s; reading it through libvips", path, exc)
    return VipsImageSource(path, settings)
