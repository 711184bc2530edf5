"""A bounded local cache of whole remote files: for servers that ignore Range (Girder
behind some proxies) and for formats whose library reads only local files (OpenSlide,
libCZI) when their file is a URL source.

Files are named by their content version (file id and version), so a replaced file is
downloaded anew. A download is written to a temporary name and renamed into place, so
no process ever opens a partial file; a per-file lock (``flock``, which also excludes
threads of one process) makes concurrent processes wait for one download instead of
repeating it. Before a download, least recently used files (by modification time,
refreshed on each use) are deleted until the new file fits the bound; a process that
still has a deleted file open keeps reading it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from tilecast.common.errors import ServiceUnavailable, UnsupportedImage

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
PARTIAL_PREFIX = ".partial-"
EVICTION_LOCK = ".eviction.lock"
STALE = 3600.0  # seconds after which an untouched partial download is abandoned


def default_download_dir(name: str = "tilecast-downloads") -> str:
    return os.path.join(tempfile.gettempdir(), name)


class DownloadCache:
    """``place`` names where files come from in messages and logs ("Girder", "the
    store"); ``unavailable`` is the error of an incomplete download."""

    def __init__(
        self,
        directory: str,
        capacity_bytes: int,
        *,
        place: str = "the remote server",
        unavailable: type[ServiceUnavailable] = ServiceUnavailable,
    ) -> None:
        self.directory = directory or default_download_dir()
        self.capacity_bytes = capacity_bytes
        self.place = place
        self.unavailable = unavailable

    def local_copy(self, name: str, size: int, download: Callable[[BinaryIO], None]) -> str:
        """The path of the cached copy of ``name`` (``size`` bytes), downloading it with
        ``download(output)`` unless it is there."""
        if size > self.capacity_bytes:
            raise UnsupportedImage("the file is larger than this server's download cache")
        os.makedirs(self.directory, exist_ok=True)
        target = os.path.join(self.directory, name)
        if self._usable(target, size):
            return target
        with _locked(target + LOCK_SUFFIX):
            if self._usable(target, size):  # another process finished it meanwhile
                return target
            self._make_room(size, keep=target)
            self._download(target, size, download)
        return target

    def cached_files(self) -> list[str]:
        """Names of the complete files in the cache, least recently used first."""
        return [os.path.basename(path) for path, _size, _used in self._entries()]

    # -- internals ----------------------------------------------------------------------------
    def _usable(self, path: str, size: int) -> bool:
        try:
            if os.path.getsize(path) != size:
                return False
            os.utime(path)  # recently used: evicted last
        except OSError:
            return False
        return True

    def _download(self, target: str, size: int, download: Callable[[BinaryIO], None]) -> None:
        partial = os.path.join(
            self.directory,
            f"{PARTIAL_PREFIX}{os.getpid()}-{threading.get_ident()}-{os.path.basename(target)}",
        )
        try:
            with open(partial, "wb") as output:
                download(output)
            if os.path.getsize(partial) != size:
                raise self.unavailable(f"the download from {self.place} was incomplete")
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
        log.info("downloaded %s (%d bytes) from %s into the download cache", target, size,
                 self.place)  # fmt: skip

    def _make_room(self, incoming: int, keep: str) -> None:
        with _locked(os.path.join(self.directory, EVICTION_LOCK)):
            self._remove_stale_partials()
            entries = self._entries()
            total = sum(size for _path, size, _used in entries) + incoming
            for path, size, _used in entries:
                if total <= self.capacity_bytes:
                    break
                if path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    log.info("evicted %s from the download cache", path)
                total -= size

    def _remove_stale_partials(self) -> None:
        """Partial downloads of processes that died; live ones are written to steadily."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if name.startswith(PARTIAL_PREFIX) and now - os.stat(path).st_mtime > STALE:
                        os.remove(path)

    def _entries(self) -> list[tuple[str, int, float]]:
        entries = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(".") or name.endswith(LOCK_SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            with contextlib.suppress(OSError):
                info = os.stat(path)
                entries.append((path, info.st_size, info.st_mtime))
        entries.sort(key=lambda entry: entry[2])
        return entries


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
