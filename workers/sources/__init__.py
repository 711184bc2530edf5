"""Image readers behind one small interface (workers/sources/base.py).

``open_source`` picks the reader: TIFF files go to the TIFF reader (native pyramid
levels, JPEG pass-through) unless large_image's TIFF source would not take them,
in which case they, like every other format libvips knows, go to the generic
libvips reader.
"""

from __future__ import annotations

import logging

from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.files import ImageFile, LocalFile
from tilecast.workers.sources.tiff import NotATiffPyramid, TiffSource
from tilecast.workers.sources.vipsimage import VipsImageSource

log = logging.getLogger(__name__)

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

__all__ = ["ImageFile", "ImageSource", "LocalFile", "open_source"]


def open_source(file: ImageFile | str, settings: Settings) -> ImageSource:
    """Open ``file`` (or the local file at a path) with the reader that fits it;
    UnsupportedImage when none does. The source owns the file from here on: closing
    the source closes it, and so does a failure to open it."""
    if isinstance(file, str):
        try:
            file = LocalFile(file)
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
    try:
        return _open_reader(file, settings)
    except BaseException:
        file.close()
        raise


def _open_reader(file: ImageFile, settings: Settings) -> ImageSource:
    try:
        magic = file.read(0, 4)
    except OSError as exc:
        raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
    if magic in TIFF_MAGICS:
        try:
            return TiffSource(file, settings)
        except NotATiffPyramid as exc:
            log.debug("%s: %s; reading it through libvips", file.name, exc)
    return VipsImageSource(file, settings)
