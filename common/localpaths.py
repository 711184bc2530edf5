"""Local files as sources: confined to the configured roots, symlinks included."""

from __future__ import annotations

import hashlib
import itertools
import os

from tilecast.common.errors import SourceRefused

# How many entries of a directory are looked at for the files in it (a directory
# source's identity, a DICOM series' instances beside a file): a bound on the work.
MAX_FOLDER_ENTRIES = 4096


def resolve_under_roots(path: str, roots: tuple[str, ...]) -> str:
    """The real path of ``path`` if it is a readable file or directory below one of
    ``roots``."""
    if not roots:
        raise SourceRefused(
            "no source roots are configured (TILECAST_SOURCE_ROOTS)", parameter="path"
        )
    if not isinstance(path, str) or not path or "\x00" in path:
        raise SourceRefused("path must be a non-empty string", parameter="path")
    real = os.path.realpath(path)
    if not within_roots(real, roots):
        raise SourceRefused("path is outside the configured source roots", parameter="path")
    if not (os.path.isfile(real) or os.path.isdir(real)):
        # A directory may be one image (an OME-Zarr store, a DICOM series): its readers
        # decide; a FIFO, socket or device is never one.
        raise SourceRefused("path is neither a file nor a directory", parameter="path")
    if not os.access(real, os.R_OK):
        raise SourceRefused("path is not readable", parameter="path")
    return real


def within_roots(real_path: str, roots: tuple[str, ...]) -> bool:
    """Whether the real path ``real_path`` lies below one of ``roots``."""
    return any(_is_within(real_path, os.path.realpath(root)) for root in roots)


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def folder_files(folder: str) -> list[str] | None:
    """The paths of the regular files (symlinks followed) among a directory's entries,
    sorted by name; None when it holds more than ``MAX_FOLDER_ENTRIES`` entries or
    cannot be listed: a partial listing would depend on the filesystem's order."""
    try:
        with os.scandir(folder) as entries:
            listed = list(itertools.islice(entries, MAX_FOLDER_ENTRIES + 1))
    except OSError:
        return None
    if len(listed) > MAX_FOLDER_ENTRIES:
        return None
    return sorted(entry.path for entry in listed if _is_file(entry))


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def source_id_for_path(real_path: str) -> str:
    """A stable 24-hex id (shaped like a Girder ObjectId): one path, one id."""
    return hashlib.sha256(("file:" + real_path).encode()).hexdigest()[:24]
