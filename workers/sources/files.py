"""The bytes of an image file, wherever they live: what every reader takes.

An :class:`ImageFile` offers positioned, thread-safe reads (``read(offset, count)``),
its size, and a way to hand it to libvips. A local file keeps libvips' path-based
loaders (:attr:`ImageFile.local_path`), which are the fastest; any other file (a Girder
file read by HTTP ranges, workers/girder/) is given to libvips as a
``pyvips.SourceCustom`` whose reads and seeks land on :meth:`ImageFile.read`.

libvips cannot carry a Python exception through a read callback, so a failed read
(Girder went away) is remembered and the reader re-raises it with
:meth:`ImageFile.raise_read_error` instead of reporting a corrupt file.

Libraries that read a file object (pydicom and wsidicom, nd2, liffile) get a
:class:`FileStream` over the ImageFile.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from abc import ABC, abstractmethod
from typing import Any

import pyvips

from tilecast.common.errors import UnsupportedImage

# With read-ahead, a stream serves reads of at most this many bytes from its block.
SMALL_READ = 4096


class ImageFile(ABC):
    """A readable file of known size. Subclasses set ``name``, ``size``, ``local_path``."""

    name: str  # for logs only: clients never see it
    size: int
    local_path: str | None = None
    # A directory source (an OME-Zarr store, a DICOM series): no bytes of its own; its
    # readers open the files under ``local_path``.
    is_directory: bool = False

    def __init__(self) -> None:
        self._read_error: BaseException | None = None
        self._error_lock = threading.Lock()

    @abstractmethod
    def read(self, offset: int, count: int) -> bytes:
        """``count`` bytes from ``offset`` (fewer only at the end of the file)."""

    def close(self) -> None:  # noqa: B027  (most files hold nothing to release)
        """Release what the file holds; reads after this may fail."""

    def prefetch(self, offset: int, count: int) -> None:  # noqa: B027  (a hint)
        """Bytes ``offset`` .. ``offset + count`` hold the file's structure (what every
        reader of it reads first) and are about to be read in small pieces: a remote
        file fetches them in one request instead of one per piece it lacks, and may
        share them with other processes."""

    def local_copy(self) -> str | None:
        """A local path holding this file's bytes, for libraries that open files by path
        only (OpenSlide, libCZI): ``local_path`` for a local file; a remote object may
        download itself into a bounded cache (workers/remote/opening.py); None when
        neither is possible."""
        return self.local_path

    # -- libvips ---------------------------------------------------------------------
    def vips_source(self) -> pyvips.Source:
        """A new libvips source over this file, with its own read position (libvips
        seeks and reads one image at a time on a source). Images loaded from it must
        hold it (``Image.new_from_source`` does; ``*load_source`` operations do not):
        once it is collected, libvips calls into freed callbacks."""
        return _CustomSource(self).source

    def load_tiff(self, **options: Any) -> pyvips.Image:
        if self.local_path is not None:
            return pyvips.Image.tiffload(self.local_path, **options)
        # new_from_source (unlike tiffload_source) makes the image, and every image made
        # from it, hold the source: its Python read callbacks must outlive them all.
        # The content is a TIFF, so libvips picks tiffload_source and takes its options.
        return self._from_source(**options)

    def load_image(self, **options: Any) -> pyvips.Image:
        """Any format libvips knows, chosen by its content."""
        if self.local_path is not None:
            return pyvips.Image.new_from_file(self.local_path, **options)
        return self._from_source(**options)

    def _from_source(self, **options: Any) -> pyvips.Image:
        return pyvips.Image.new_from_source(self.vips_source(), "", **options)

    def remember_read_error(self, error: BaseException) -> None:
        with self._error_lock:
            if self._read_error is None:
                self._read_error = error

    def raise_read_error(self) -> None:
        """Re-raise (once) an error a libvips read callback swallowed."""
        with self._error_lock:
            error, self._read_error = self._read_error, None
        if error is not None:
            raise error

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size})"


class LocalFile(ImageFile):
    """A file on a local (or mounted) filesystem, read with ``os.pread`` on one
    descriptor: no shared position to guard, any order of reads."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.name = path
        self.local_path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode):
                raise IsADirectoryError(0, "not a regular file")
            self.size = info.st_size
        except BaseException:
            os.close(self._fd)
            raise

    def read(self, offset: int, count: int) -> bytes:
        if self._fd < 0:
            raise ValueError(f"{self.name} is closed")
        return os.pread(self._fd, count, offset)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalDirectory(ImageFile):
    """A local directory registered as one image (an OME-Zarr store, a DICOM series).
    Its own bytes are none; readers that take directories read the files below
    ``local_path``. The open descriptor pins what was registered (its identity)."""

    is_directory = True

    def __init__(self, path: str) -> None:
        super().__init__()
        self.name = path
        self.local_path = path
        self.size = 0
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def read(self, offset: int, count: int) -> bytes:
        return b""

    def entries(self, limit: int) -> list[str]:
        """Up to ``limit`` names directly below, sorted (a bounded look: a directory of
        a million files costs no more than ``limit`` of them)."""
        names: list[str] = []
        with os.scandir(self.name) as listing:
            for entry in listing:
                names.append(entry.name)
                if len(names) >= limit:
                    break
        return sorted(names)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileTooLarge(UnsupportedImage):
    """A file of a directory source larger than its reader reads (a metadata document,
    a stored chunk): refused before its bytes are fetched. Crosses as a 422."""


class KeyedDirectory(ImageFile):
    """A directory source whose files are named by keys and fetched through it rather
    than opened below a ``local_path``: a URL prefix in an object store or behind HTTP
    (workers/remote/prefix.py). Keys are ``/``-separated names relative to it."""

    is_directory = True

    def read(self, offset: int, count: int) -> bytes:
        return b""

    @abstractmethod
    def get(self, key: str, limit: int, share: bool = False) -> bytes | None:
        """The file ``key`` whole (None when there is none); FileTooLarge past ``limit``
        bytes, before reading them. ``share``: a small
        document every process opening the directory reads (kept, and shared among
        processes where the directory can)."""

    @abstractmethod
    def member(self, key: str) -> ImageFile | None:
        """The file ``key`` for reads by range (None when there is none)."""


def open_local(path: str) -> LocalFile | LocalDirectory:
    """The local file or directory at ``path`` (OSError when neither can be opened)."""
    if os.path.isdir(path):
        return LocalDirectory(path)
    return LocalFile(path)


class _CustomSource:
    """One libvips read position over an ImageFile."""

    def __init__(self, file: ImageFile) -> None:
        self.file = file
        self.position = 0
        self.source = pyvips.SourceCustom()
        # Connected directly (not through SourceCustom.on_read) so that a failure can
        # answer -1, which libvips reports as a read error rather than end of file.
        self.source.signal_connect("read", self._read)
        self.source.on_seek(self._seek)

    def _read(self, buffer: Any) -> int:
        try:
            wanted = min(len(buffer), self.file.size - self.position)
            if wanted <= 0:
                return 0
            data = self.file.read(self.position, wanted)
        except Exception as exc:
            self.file.remember_read_error(exc)
            return -1
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _seek(self, offset: int, whence: int) -> int:
        try:
            target = _seek_target(self.position, self.file.size, offset, whence)
        except ValueError:
            return -1
        if target < 0:
            return -1
        self.position = target
        return target


class FileStream(io.RawIOBase):
    """A read-only, seekable binary file over an ImageFile's positioned reads, for
    libraries that take a file object. Its position is its own and it is not
    thread-safe: give each library handle its own stream (wsidicom reads each under a
    lock of its own). Reads stop at the end of the file, so a length a header claims
    never sizes a buffer beyond it. It has an empty ``name``: no library may reopen it
    by path. Closing it leaves the ImageFile open (the reader owns and closes that).

    ``read_ahead``: a read of at most ``SMALL_READ`` bytes is served from a block of
    ``read_ahead`` bytes fetched at once, for parsers that read a header a few bytes at
    a time (pydicom): one positioned read (one HTTP range of a remote file) instead of
    hundreds. 0 sends every read straight to the file.
    """

    def __init__(self, file: ImageFile, *, read_ahead: int = 0) -> None:
        super().__init__()
        self.file = file
        self.name = ""
        self._read_ahead = read_ahead
        self._position = 0
        self._block_start = 0
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = _seek_target(self._position, self.file.size, offset, whence)
        if target < 0:
            raise OSError("seek before the start of the file")
        self._position = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        position = self._position
        remaining = self.file.size - position
        count = remaining if size is None or size < 0 or size > remaining else size
        if count <= 0:
            return b""
        if count <= SMALL_READ and self._read_ahead:
            data = self._small_read(count)
        else:
            data = self.file.read(position, count)
        self._position = position + len(data)
        return data

    def _small_read(self, count: int) -> bytes:
        start = self._position - self._block_start
        if start < 0 or start + count > len(self._block):
            self._block_start = self._position
            self._block = self.file.read(self._position, max(count, self._read_ahead))
            start = 0
        return self._block[start : start + count]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _seek_target(position: int, size: int, offset: int, whence: int) -> int:
    """Where a seek by ``offset`` from ``whence`` lands (perhaps before the start)."""
    if whence == os.SEEK_SET:
        return offset
    if whence == os.SEEK_CUR:
        return position + offset
    if whence == os.SEEK_END:
        return size + offset
    raise ValueError(f"invalid whence {whence}")
