"""Image readers behind one interface (workers/sources/reader.py), chosen by content.

``open_source`` hands a file to the reader registry (workers/sources/registry.py):
tilecast's own readers -- OME-TIFF, TIFF (native pyramid levels, JPEG pass-through),
OME-Zarr (directories and zipped stores), libvips for the rest -- and any a site installs
under the ``tilecast.readers`` entry point group, tried in priority order (docs/READERS.md).
"""

from __future__ import annotations

from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.files import ImageFile, LocalDirectory, LocalFile, open_local
from tilecast.workers.sources.reader import Probe, Reader, ReaderDeclined
from tilecast.workers.sources.registry import default_registry

__all__ = [
    "ImageFile",
    "ImageSource",
    "LocalDirectory",
    "LocalFile",
    "Probe",
    "Reader",
    "ReaderDeclined",
    "open_source",
]


def open_source(file: ImageFile | str, settings: Settings) -> ImageSource:
    """Open ``file`` (or the local file or directory at a path) with the reader that fits it;
    UnsupportedImage when none does. The source owns the file from here on: closing
    the source closes it, and so does a failure to open it."""
    if isinstance(file, str):
        try:
            file = open_local(file)
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
    try:
        return default_registry().open(file, settings)
    except BaseException:
        file.close()
        raise
