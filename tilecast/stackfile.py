"""Where the stack ``tilecast up`` started is, for the command line in another terminal.

``up`` leaves ``stack.json`` in its data directory once its api answers: the
``TILECAST_*_URL`` variables it passes its children (however many Redis servers they
name), the api's URL, the source roots and its pid; written atomically, removed when
``up`` stops. ``tilecast add/precache/jobs/stats/sign`` read it when no Redis URL is set
in their own environment, so they talk to the same Redis as the stack, check paths
against the same roots as its workers, and never fall back to a Redis on
127.0.0.1:6379 that belongs to something else. A file whose pid no longer runs (an
``up`` that was killed) is stale and is refused with a line saying so.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tilecast import procs
from tilecast.common.errors import ConfigurationError
from tilecast.common.settings import PREFIX, Settings

STACK_FILE = "stack.json"
DEFAULT_DATA_DIR = Path(".tilecast")
ROOTS_VARIABLE = PREFIX + "SOURCE_ROOTS"
# The variables that say which Redis servers a command talks to: set in the
# environment, they win over the file (a deployment's CLI, the test suite).
LOCATION_VARIABLES = tuple(PREFIX + name for name in ("CACHE_URL", "STATE_URL", "BROKER_URL"))


@dataclass(frozen=True)
class Stack:
    """What ``up`` wrote: enough to reach its Redis servers and its api."""

    pid: int
    api_url: str
    urls: dict[str, str]  # TILECAST_*_URL -> URL, as up's children got them
    source_roots: tuple[str, ...]
    path: Path

    def environment(self) -> dict[str, str]:
        """The ``TILECAST_*`` variables a command needs to act on this stack."""
        return {**self.urls, ROOTS_VARIABLE: os.pathsep.join(self.source_roots)}


def stack_path(data_dir: Path) -> Path:
    return data_dir / STACK_FILE


def write(data_dir: Path, *, api_url: str, env: Mapping[str, str]) -> Path:
    """Record the running stack (``env``: the environment up gives its children).
    Written to a temporary name and renamed, so a reader never sees half a file."""
    path = stack_path(data_dir)
    body = {
        "pid": os.getpid(),
        "api_url": api_url,
        "urls": {k: v for k, v in sorted(env.items()) if _is_url_variable(k) and v},
        "source_roots": [r for r in env.get(ROOTS_VARIABLE, "").split(os.pathsep) if r],
        "started": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{STACK_FILE}.{os.getpid()}")
    partial.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(partial, path)
    return path


def remove(data_dir: Path) -> None:
    """Remove the file if this process wrote it (a second up refused at start, or one
    that started later with the same data directory, keeps its own)."""
    path = stack_path(data_dir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def read(data_dir: Path) -> Stack | None:
    """The stack recorded in ``data_dir``; None when there is no file;
    ConfigurationError for a stale or unreadable one."""
    path = stack_path(data_dir)
    try:
        body = json.loads(path.read_text())
        stack = Stack(
            pid=int(body["pid"]),
            api_url=str(body["api_url"]),
            urls={str(k): str(v) for k, v in body["urls"].items()},
            source_roots=tuple(str(r) for r in body["source_roots"]),
            path=path.resolve(),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"{path} cannot be read ({exc}); remove it") from None
    if not _is_tilecast(stack.pid):
        raise ConfigurationError(
            f"{path} is stale: the tilecast up that wrote it (pid {stack.pid}) no longer "
            "runs; start it again (tilecast up)"
        )
    return stack


def check_free(data_dir: Path) -> None:
    """Refuse to start a second ``up`` on a data directory a running one uses."""
    try:
        stack = read(data_dir)
    except ConfigurationError:
        return  # stale or unreadable: the new up overwrites it
    if stack is not None and stack.pid != os.getpid():
        raise ConfigurationError(
            f"a tilecast up (pid {stack.pid}) already runs with data directory {data_dir}; "
            "stop it, or give this one another --data-dir"
        )


def settings_for(data_dir: Path, environ: Mapping[str, str]) -> tuple[Settings, str]:
    """The settings a command that talks to the stack uses, and where its Redis URLs
    came from (for error messages). ``environ`` (the process's environment) wins when it
    names a Redis; otherwise the stack ``up`` recorded in ``data_dir`` supplies its URLs
    and source roots (its workers check paths against those roots: a path they would
    refuse must be refused at registration). ConfigurationError when neither exists."""
    own = Settings.from_env(environ)  # a setting that cannot be used is said first
    if any(environ.get(name) for name in LOCATION_VARIABLES):
        return own, "the TILECAST_* environment"
    stack = read(data_dir)
    if stack is None:
        raise ConfigurationError(
            f"no tilecast up runs with data directory {data_dir} (no {stack_path(data_dir)}): "
            "start one (tilecast up), pass its --data-dir, or set TILECAST_CACHE_URL"
        )
    return Settings.from_env({**environ, **stack.environment()}), str(stack.path)


def api_url(data_dir: Path, environ: Mapping[str, str]) -> str | None:
    """The api URL of the stack recorded in ``data_dir``, unless the environment names
    another Redis (then the stack is not the one being acted on) or none runs;
    ConfigurationError for a stale file."""
    if any(environ.get(name) for name in LOCATION_VARIABLES):
        return None
    stack = read(data_dir)
    return None if stack is None else stack.api_url


def cli_hints(data_dir: Path, roots: tuple[str, ...] | list[str]) -> str:
    """How to run the command line against this stack from another terminal: the
    ``tilecast`` this ``up`` runs from, and ``--data-dir`` unless it is the default
    seen from this directory."""
    cwd = Path.cwd()
    exe = _display_path(_tilecast_executable(), cwd)
    data = "" if data_dir.resolve() == (cwd / DEFAULT_DATA_DIR).resolve() else str(data_dir)
    opt = f" --data-dir {shlex.quote(data)}" if data else ""
    rows = [
        (f"{exe} add{opt} PATH", "register an image (under " + _roots_text(roots) + ")"),
        (f"{exe} precache{opt} ID --wait", "pre-render an image, following its progress"),
        (f"{exe} jobs{opt}", "pre-rendering jobs"),
        (f"{exe} stats{opt}", "cache, render and queue numbers"),
    ]
    width = max(len(command) for command, _ in rows)
    lines = [f"\ncommand line (in another terminal, from {cwd}):"]
    lines += [f"  {command:<{width}}  {what}" for command, what in rows]
    activate = Path(_tilecast_executable()).parent / "activate"
    if activate.is_file():
        shown = _display_path(str(activate), cwd)
        lines.append(f"  or first `. {shown}`, then: tilecast add{opt} PATH, ...")
    lines.append("  more roots: tilecast up --root DIR (repeatable)")
    return "\n".join(lines)


def _roots_text(roots: tuple[str, ...] | list[str]) -> str:
    return ", ".join(roots) if roots else "no root"


def _tilecast_executable() -> str:
    """The ``tilecast`` script this process runs as, else the one next to its Python
    (the venv's), else ``python -m tilecast``."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "tilecast" and script.exists():
        return str(script.absolute())
    beside = Path(sys.executable).parent / "tilecast"
    if beside.exists():
        return str(beside)
    return f"{shlex.quote(sys.executable)} -m tilecast"


def _display_path(path: str, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it lies below it (``.venv/bin/tilecast``)."""
    candidate = Path(path)
    if candidate.is_absolute() and candidate.is_relative_to(cwd):
        return shlex.quote(str(candidate.relative_to(cwd)))
    return path if " -m " in path else shlex.quote(path)


def _is_url_variable(name: str) -> bool:
    return name.startswith(PREFIX) and name.endswith("_URL")


def _is_tilecast(pid: int) -> bool:
    """Whether ``pid`` runs and is a tilecast process (not a recycled pid)."""
    if not procs.alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"tilecast" in cmdline
