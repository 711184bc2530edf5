"""A file's identity, kept with its registration so that a changed file is noticed.

A local file is named by ``{"dev", "ino", "size", "mtime_ns", "ctime_ns"}`` from one
``stat``: a rename over it changes the inode, an in-place rewrite or a truncation
changes the size, mtime or ctime (ctime moves on every write even when a tool such as
``rsync --inplace -t`` puts the mtime back). A Girder file is named by
``{"file_id", "version", "size"}``, what its block cache keys by (workers/girder/).
A folder (a DICOM series registered as its folder) is named by its own ``stat`` plus
``files``, a digest of its files' identities (common/localpaths.py), so that an
instance added, removed or rewritten in place is noticed as a file's change is.

Two identities name the same file when they agree on every field but the device: a
share mounted on several hosts has one device number per host, and a worker comparing
its own number with another host's would see a change that never happened.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from tilecast.common.localpaths import folder_files

Identity = dict[str, Any]

# Recorded for the record's reader, never compared (see above).
HOST_LOCAL_FIELDS = frozenset({"dev"})


def local_identity(info: os.stat_result) -> Identity:
    return {
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
    }


def stat_identity(path: str) -> Identity | None:
    """The identity of the file (or folder source) at ``path`` now; None when there is
    none (deleted, or no longer a regular file or folder). Other failures (EIO, ESTALE
    on a share that hiccups) raise OSError: they say nothing about the file, and must
    not retire it."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISDIR(info.st_mode):
        return folder_identity(path, info)
    if not stat.S_ISREG(info.st_mode):
        return None
    return local_identity(info)


def folder_identity(path: str, info: os.stat_result | None = None) -> Identity:
    """The identity of a folder source: its own ``stat`` and a digest of its files'."""
    info = info if info is not None else os.stat(path)
    return {**local_identity(info), "files": _files_digest(path)}


def _files_digest(folder: str) -> str | None:
    """A digest of the name, inode, size and times of each of a folder's files (None
    when it holds more entries than are looked at)."""
    files = folder_files(folder)
    if files is None:
        return None
    digest = hashlib.sha256()
    for path in files:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue  # removed while listed: the folder's own times moved too
        fields = (os.path.basename(path), info.st_ino, info.st_size, info.st_mtime_ns)
        digest.update(repr((*fields, info.st_ctime_ns)).encode())
    return digest.hexdigest()


def same_file(a: Identity | None, b: Identity | None) -> bool:
    """Whether ``a`` and ``b`` name the same file in the same state."""
    if a is None or b is None:
        return a is b
    keys = (set(a) | set(b)) - HOST_LOCAL_FIELDS
    return all(a.get(key) == b.get(key) for key in keys)
