"""Cached virtualenvs holding Girder 3.2 and tilecast's Girder plugin (the machinery
tests/largeimagevenv.py builds the Girder 3.2 + girder-large-image venv of the Girder
tests with; by default, Girder and the plugin alone).

Girder 3.2 cannot share tilecast's virtualenv (which carries Girder 5, and
girder-large-image pins ``girder<5``), so it gets its own, built once and cached under
``~/.cache/tilecast-test/``. Its base (Girder, secantusdb, ...) is keyed by the
requirements, the plugin's pyproject and the Python version; the plugin is installed
editable, so code edits need nothing, and a checkout in another folder only reinstalls
the plugin (a few seconds). A file lock makes parallel test runs build it once.
Stdlib only, so the system Python can run it. ``tests/bench/girder_side.py`` keeps a
venv of its own for the benchmarks.

    python -m tests.girder3venv            # ensure the cached Girder-only venv, print its path
    python -m tests.girder3venv DIR        # build a fresh one in DIR
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "deploy" / "girder-plugin"
REQUIREMENTS = ("girder==3.2.18", "secantusdb==0.7.0b3")
CACHE = Path.home() / ".cache" / "tilecast-test"
VENV_NAME = "girder3-venv"
BASE_KEY_FILE = ".tilecast-base-key"
PLUGIN_KEY_FILE = ".tilecast-plugin"


class VenvError(RuntimeError):
    pass


def base_key(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    digest = hashlib.sha256()
    for part in (*requirements, sys.version.split()[0]):
        digest.update(part.encode() + b"\0")
    digest.update((PLUGIN / "pyproject.toml").read_bytes())
    return digest.hexdigest()[:20]


def ensure(
    cache: Path = CACHE, *, name: str = VENV_NAME, requirements: tuple[str, ...] = REQUIREMENTS
) -> Path:
    """The cached venv ``name`` holding ``requirements`` and the plugin, (re)built first
    when missing or stale (other names: e.g. tests/largeimagevenv.py's)."""
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / name
    key = base_key(requirements)
    with (cache / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _marked(venv / BASE_KEY_FILE, key):
            build(venv, requirements)
            # Written last: an interrupted build is never taken for a finished one.
            (venv / BASE_KEY_FILE).write_text(key)
            (venv / PLUGIN_KEY_FILE).write_text(str(PLUGIN))
        elif not _marked(venv / PLUGIN_KEY_FILE, str(PLUGIN)):
            _install_plugin(venv)
            (venv / PLUGIN_KEY_FILE).write_text(str(PLUGIN))
    return venv


def _marked(marker: Path, key: str) -> bool:
    return (
        marker.is_file()
        and marker.read_text() == key
        and (marker.parent / "bin" / "girder").exists()
    )


def build(venv: Path, requirements: tuple[str, ...] = REQUIREMENTS) -> float:
    """Create ``venv`` from scratch; the seconds it took."""
    started = time.monotonic()
    # The base interpreter, not tilecast's venv: nothing of Girder 5 leaks in.
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--clear", str(venv)])
    _run([*_pip(venv), *requirements, "-e", str(PLUGIN)])
    return time.monotonic() - started


def _install_plugin(venv: Path) -> None:
    _run([*_pip(venv), "--no-deps", "-e", str(PLUGIN)])


def _pip(venv: Path) -> list[str]:
    return [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VenvError(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main(argv: list[str]) -> int:
    if argv:
        seconds = build(Path(argv[0]).resolve())
        print(f"built {argv[0]} in {seconds:.0f} s")
    else:
        print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
