"""Child processes that never outlive their parent: own process group, stopped as a group.

``tilecast up`` and the test suite start redis-server, Celery workers and gunicorn this
way. Each child leads its own process group so that stopping it also stops the
processes it forked (Celery's pool, gunicorn's workers), and on Linux it is asked to
die with its parent so that even a SIGKILLed parent leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from common.settings import PREFIX

_PR_SET_PDEATHSIG = 1


def child_environment(
    overrides: Mapping[str, str] | None = None, *, keep_tilecast: bool = True
) -> dict[str, str]:
    """This process's environment for a child, with ``overrides`` applied.

    ``keep_tilecast=False`` drops inherited ``TILECAST_*`` variables first, so that a
    test never talks to a server named in the developer's shell.
    """
    env = dict(os.environ)
    if not keep_tilecast:
        env = {k: v for k, v in env.items() if not k.startswith(PREFIX)}
    env.update(overrides or {})
    return env


def _die_with_parent() -> None:
    # Runs in the child between fork and exec; best effort, Linux only.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (output to ``log`` if given)."""
    out: IO[bytes] | int | None = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
    try:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        if out is not None and not isinstance(out, int):
            out.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM the child's whole process group, SIGKILL what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    _signal_group(proc, signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        code = proc.wait(timeout=5)
    # Children of the leader (pool processes) may still be exiting: give them the rest
    # of the time, then make sure they go.
    _wait_group_gone(proc.pid, max(0.5, deadline - time.monotonic()))
    return code


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    if _wait_until_gone(pgid, timeout):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: return once the kernel has ended them.
    _wait_until_gone(pgid, 5.0)


def _wait_until_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(
        stat[0] != "Z" and int(stat[2]) == pgid
        for stat in (_proc_stat(entry) for entry in proc.iterdir() if entry.name.isdigit())
        if stat
    )


def _proc_stat(entry: Path) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def descendants(pid: int) -> set[int]:
    """Live descendants of ``pid`` (Linux), found by walking parent links in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(entry) if entry.name.isdigit() else None
        if stat and stat[0] != "Z":
            parents[int(entry.name)] = int(stat[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    stat = _proc_stat(Path("/proc") / str(pid))
    return stat is not None and stat[0] != "Z"
