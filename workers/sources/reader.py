"""The reader interface: what a file format plugs into tilecast with (docs/READERS.md).

A :class:`Reader` is an :class:`~tilecast.workers.sources.base.ImageSource` -- the opened
image the engine renders from: geometry, metadata, frames, native tile reads (the
file's own JPEG bytes passed through as a ``RawTile.from_jpeg`` where it stores them,
else pixels), associated images, ``close`` -- that also says how it is found and
opened:

- ``name``: what logs and the registry call it (unique);
- ``priority``: lower is tried first; the fastest reader that understands a file
  should win (see ``PRIORITIES``);
- ``can_read(probe)``: a cheap look at the file's first bytes (:class:`Probe`): True
  when the content is this reader's format. Never decided by the file's name alone;
- ``open(probe, settings)``: the opened reader; by default ``cls(probe.file, settings)``.

Opening ends in one of three ways. The reader is returned; or it raises
:class:`ReaderDeclined` (the content is of the reader's family but a later reader
should take it, e.g. a TIFF that is not a pyramid goes on to libvips) and the registry
(workers/sources/registry.py) tries the next reader; or it raises
``common.errors.UnsupportedImage`` (422): the file is this reader's format and cannot
be read, and no other reader is tried.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.codecheaders import JPEG, check_tile
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.files import ImageFile

# What a reader plugin needs, importable from this one module (docs/READERS.md).
__all__ = [
    "HEAD_BYTES",
    "JPEG",
    "PRIORITIES",
    "ImageFile",
    "Probe",
    "RawTile",
    "Reader",
    "ReaderDeclined",
    "Settings",
    "UnsupportedImage",
    "check_tile",
    "level_count",
]

T = TypeVar("T")

# How much of a file every probe sees: enough for any magic number (DICOM's sits at
# byte 128, a zip's central directory is not needed to tell a zip), one block of a
# remote file's block cache at most.
HEAD_BYTES = 4096
# How many names of a directory source a probe lists: enough to see an OME-Zarr's
# metadata files or a DICOM series' instances, bounded for a directory of millions.
MAX_ENTRIES = 4096

# Where tilecast's own readers sit, so that a plugin can place itself between them.
PRIORITIES: dict[str, int] = {
    "ome-tiff": 100,  # OME-XML in the first page: large_image's ometiff source answers
    "tiff": 200,  # tilecast's own TIFF reader: native levels, JPEG pass-through
    "dicom": 300,  # DICOM WSI series (wsidicom): JPEG frames pass through
    "ome-zarr": 310,  # OME-Zarr (NGFF 0.4 / 0.5) directories and .zip stores
    "czi": 320,  # Zeiss CZI (pylibCZIrw)
    "nd2": 330,  # Nikon ND2 (nd2)
    "lif": 340,  # Leica LIF (liffile)
    "composed": 350,  # a JSON/YAML description of an image composed from several files
    "jpeg2000": 400,  # plain .jp2 / .j2k files
    "openslide": 900,  # every vendor format OpenSlide reads: after every faster reader
    "libvips": 1000,  # anything libvips opens; the last resort
}


class ReaderDeclined(Exception):
    """Raised by ``Reader.open``: the file is not for this reader after all (a closer
    look than ``can_read``'s found so); the registry tries the next reader."""


class Probe:
    """What readers look at to recognise a file: its first ``HEAD_BYTES`` bytes and its
    size, plus structures one reader parses and another reuses (:meth:`shared`), so
    that a file looked at by several readers is parsed once."""

    def __init__(self, file: ImageFile) -> None:
        self.file = file
        try:
            self.head = file.read(0, min(HEAD_BYTES, file.size))
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror or 'I/O error'}") from None
        self._shared: dict[str, tuple[Any, BaseException | None]] = {}
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.file.size

    @property
    def is_directory(self) -> bool:
        """A directory source: ``head`` is empty, :meth:`entries` names what is in it."""
        return self.file.is_directory

    def entries(self) -> list[str]:
        """The names directly in a directory source (at most ``MAX_ENTRIES``, sorted),
        listed once per probe; empty for a file."""
        listing = getattr(self.file, "entries", None)
        if listing is None:
            return []
        return self.shared("directory-entries", lambda _file: listing(MAX_ENTRIES))

    def startswith(self, *magics: bytes) -> bool:
        return self.head.startswith(magics)

    def shared(self, key: str, make: Callable[[ImageFile], T]) -> T:
        """``make(file)``, computed once per probe under ``key``; an exception it raised
        is raised again to every later asker."""
        with self._lock:
            if key not in self._shared:
                try:
                    self._shared[key] = (make(self.file), None)
                except Exception as exc:
                    self._shared[key] = (None, exc)
            value, error = self._shared[key]
        if error is not None:
            raise error
        return value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Probe({self.file!r})"


class Reader(ImageSource):
    """An image format tilecast can open. Subclasses set ``name`` and ``priority``,
    implement ``can_read`` and everything ImageSource asks (``native_level_size``,
    ``read_tile``, ``estimated_bytes``, ``close``; geometry set in ``__init__``), and
    the associated images where the format has them."""

    name: ClassVar[str]
    priority: ClassVar[int]
    # What a client's error message calls the format ("TIFF", "DICOM WSI"); the name when
    # unset.
    format_name: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def can_read(cls, probe: Probe) -> bool:
        """Whether the file's content is this reader's format. Cheap: the first bytes,
        at most a shared parse of the file's structure; nothing is decoded."""

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> Reader:
        """The file opened by this reader; the reader owns ``probe.file`` from here on
        (its ``close`` closes it). ReaderDeclined to pass the file on, UnsupportedImage
        when it is this format and unreadable."""
        return cls(probe.file, settings)  # type: ignore[call-arg]


def naming_format(error: UnsupportedImage, reader: Reader | type[Reader]) -> UnsupportedImage:
    """``error`` with the reader's format in front of its message, once: every 422 a
    reader raises, at open or for a tile, says which format it was read as."""
    label = reader.format_name or reader.name
    if error.message.startswith(label):
        return error
    return type(error)(f"{label}: {error.message}", parameter=error.parameter)
