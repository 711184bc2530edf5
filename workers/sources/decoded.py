"""One decoded copy per machine of an image that libvips can only decode whole.

PNG, JPEG, WebP (and other loaders without random access) are decoded whole before the
first pixel can be read. Left to libvips, each worker process decodes its own copy, to
memory or, past 100 MiB, to an unlinked temporary file nobody sees: N processes asking
for a 20000 x 20000 PNG wrote N x 1.2 GB. Here the first process to ask converts the
image once, streaming (sequential access, a few rows in memory), into a tiled,
losslessly compressed TIFF under ``Settings.decode_cache_dir``; every process on the
machine then reads 256 x 256 tiles from it at random. A lock file per copy makes the
others wait for the one conversion instead of repeating it; the copy appears under its
final name only once complete (temporary name, then rename). The folder is bounded by
``Settings.max_decode_disk_bytes``, least recently used copies deleted first (an open
copy stays readable by the processes holding it), and an image whose decoded size alone
passes the bound is refused before anything is decoded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyvips

from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources.files import ImageFile

log = logging.getLogger(__name__)

SUFFIX = ".tif"
TILE = 256


def check_bound(decoded_bytes: int, settings: Settings) -> None:
    """Refuse (422) an image whose decoded copy could not fit the bound."""
    if decoded_bytes > settings.max_decode_disk_bytes:
        raise UnsupportedImage(
            f"the image must be decoded whole to {decoded_bytes} bytes, more than the "
            f"{settings.max_decode_disk_bytes} of TILECAST_MAX_DECODE_DISK_BYTES"
        )


def cache_dir(settings: Settings) -> Path:
    return Path(settings.decode_cache_dir or Path(tempfile.gettempdir()) / "tilecast-decoded")


def identity(file: ImageFile) -> str:
    """What names the copy: the file and the version of it that was decoded, so a
    replaced or rewritten file never reads an older copy."""
    parts = [file.name, str(file.size)]
    if file.local_path is not None:
        info = os.stat(file.local_path)
        parts += [str(info.st_dev), str(info.st_ino), str(info.st_mtime_ns)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def shared_copy(
    file: ImageFile, decoded_bytes: int, load: Callable[[], pyvips.Image], settings: Settings
) -> str:
    """The path of the machine's tiled copy of ``file``, converted now from ``load()``
    (an image in sequential access) unless another process already did."""
    check_bound(decoded_bytes, settings)
    folder = cache_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    key = identity(file)
    target = folder / (key + SUFFIX)
    if _touch(target):
        return str(target)
    with open(folder / (key + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process converting it: wait for it
        if _touch(target):
            return str(target)
        _make_room(folder, decoded_bytes, settings.max_decode_disk_bytes)
        temporary = folder / f"{key}.{os.getpid()}.partial"
        try:
            load().tiffsave(
                str(temporary),
                tile=True,
                tile_width=TILE,
                tile_height=TILE,
                compression="deflate",
                level=1,
                predictor="none",
                bigtiff=True,
            )
            os.replace(temporary, target)
        except pyvips.Error as exc:
            file.raise_read_error()
            log.warning("cannot decode %s whole: %s", file.name, exc)
            raise UnsupportedImage("the image cannot be decoded: the file is corrupt") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    log.info("decoded %s once into %s (%d bytes)", file.name, target, target.stat().st_size)
    return str(target)


def _touch(path: Path) -> bool:
    """Mark a copy used (its mtime orders eviction); False when there is none."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _make_room(folder: Path, needed: int, bound: int) -> None:
    """Delete least recently used copies until ``needed`` more bytes fit the bound
    (the compressed copy is at most about its decoded size)."""
    copies = []
    for path in folder.glob("*" + SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            info = path.stat()
            copies.append((info.st_mtime, info.st_size, path))
    used = sum(size for _, size, _ in copies)
    for _, size, path in sorted(copies):
        if used + needed <= bound:
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            (folder / (path.stem + ".lock")).unlink(missing_ok=True)
        used -= size
