"""A virtualenv holding large_image's zarr source, the OME-Zarr reference of the parity tests
(tests/unit/test_omezarr_parity.py).

``large-image-source-zarr`` 1.35.6 pins zarr 2.x, and tilecast reads with zarr 3: the two
cannot share tilecast's virtualenv. This one is built once and cached under
``~/.cache/tilecast-test/largeimage-zarr-venv``, keyed by the requirements and the Python
version; a file lock makes parallel test runs build it once. A clean build takes about a
minute (wheels only). Building it needs the standard library only, like
tests/girder3venv.py, so the system Python runs it.

The tests run ``tests/largeimage_zarr_side.py`` in it, in a subprocess
(:func:`large_image_answers`).

    python -m tests.zarrvenv          # ensure the cached venv, print its path
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# The source imports ``packaging`` without declaring it.
REQUIREMENTS = ("large-image==1.35.6", "large-image-source-zarr==1.35.6", "packaging")
CACHE = Path.home() / ".cache" / "tilecast-test"
VENV_NAME = "largeimage-zarr-venv"
KEY_FILE = ".tilecast-key"
SIDE_SCRIPT = Path(__file__).resolve().parent / "largeimage_zarr_side.py"


class VenvError(RuntimeError):
    pass


def venv_key(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    digest = hashlib.sha256()
    for part in (*requirements, sys.version.split()[0]):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:20]


def ensure(cache: Path = CACHE) -> Path:
    """The cached venv's python, (re)built first when missing or stale."""
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / VENV_NAME
    python = venv / "bin" / "python"
    key = venv_key()
    marker = venv / KEY_FILE
    with (cache / f"{VENV_NAME}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.is_file() and marker.read_text() == key and python.exists()):
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", "--clear", str(venv)])
            _run(
                [
                    str(python),
                    *("-m", "pip", "install", "-q", "--disable-pip-version-check"),
                    *REQUIREMENTS,
                ]
            )
            marker.write_text(key)  # last: an interrupted build is never taken as done
    return python


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VenvError(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)


def large_image_answers(
    request: dict[str, Any], workdir: Path
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """tests/largeimage_zarr_side.py's answer to ``request`` (its JSON, and its tiles by
    key), run in the cached venv."""
    python = ensure()
    workdir.mkdir(parents=True, exist_ok=True)
    request_file = workdir / "request.json"
    request = {**request, "out": str(workdir / "tiles.npz")}
    request_file.write_text(json.dumps(request))
    done = subprocess.run(
        [str(python), str(SIDE_SCRIPT), str(request_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise VenvError(f"large_image's zarr source failed:\n{done.stderr[-3000:]}")
    import numpy as np

    with np.load(request["out"]) as tiles:
        return json.loads(done.stdout), {key: tiles[key] for key in tiles.files}
