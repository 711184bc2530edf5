"""Local files as sources: confined to the configured roots, symlinks included."""

from __future__ import annotations

import hashlib
import os

from tilecast.common.errors import SourceRefused


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
    if not any(_is_within(real, os.path.realpath(root)) for root in roots):
        raise SourceRefused("path is outside the configured source roots", parameter="path")
    if not (os.path.isfile(real) or os.path.isdir(real)):
        # A directory may be one image (an OME-Zarr store, a DICOM series): its readers
        # decide; a FIFO, socket or device is never one.
        raise SourceRefused("path is neither a file nor a directory", parameter="path")
    if not os.access(real, os.R_OK):
        raise SourceRefused("path is not readable", parameter="path")
    return real


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def source_id_for_path(real_path: str) -> str:
    """A stable 24-hex id (shaped like a Girder ObjectId): one path, one id."""
    return hashlib.sha256(("file:" + real_path).encode()).hexdigest()[:24]
