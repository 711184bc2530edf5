"""Child processes that never outlive their parent: own process group, stopped as a group.

``tilecast up`` and the test suite start redis-server, Celery workers and gunicorn this
way. Each child leads its own process group so that stopping it also stops the
processes it forked (Celery's pool, gunicorn's workers), and on Linux it is asked to
die with its parent so that even a SIGKILLed parent leaves no orphans behind.

:class:`Supervised` keeps one such child running: ``tilecast up`` supervises its
children with it, and ``tilecast worker`` its two nodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tilecast.common.settings import PREFIX

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


# --- supervision --------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised child that exited is started again, and when that stops.

    A child that exits within ``quick_seconds`` of its start failed at start (a bad
    setting, a port taken): after ``max_quick`` such exits in a row its supervisor gives
    up. Otherwise it is started again after a delay that doubles with each quick exit,
    from ``first_delay`` up to ``max_delay``; a child that had been running a while is
    started again after ``first_delay``.
    """

    quick_seconds: float = 10.0
    max_quick: int = 5
    first_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, quick: int) -> float:
        return min(self.max_delay, self.first_delay * 2**quick)


class GaveUp(Exception):
    """A supervised child kept exiting right after its start."""

    def __init__(self, name: str, code: int, tries: int, quick_seconds: float) -> None:
        super().__init__(
            f"the {name} exited ({exit_text(code)}) {tries} times in a row within "
            f"{quick_seconds:g} s of starting"
        )
        self.name = name
        self.code = code


def exit_text(code: int) -> str:
    """``status 1`` or ``killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


class Supervised:
    """One child process kept running: started again, with a back-off, when it exits.

    ``start`` makes the process. ``own_group``: the child leads its own process group
    (``spawn``), whose leftovers (a killed leader's pool processes) are asked to stop
    when the leader exits. ``check()`` is called in its supervisor's loop; it returns
    the lines worth telling (an exit, a restart) and raises :class:`GaveUp`.
    """

    def __init__(
        self,
        name: str,
        start: Callable[[], subprocess.Popen[bytes]],
        policy: RestartPolicy = RestartPolicy(),
        *,
        own_group: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._start = start
        self.policy = policy
        self.own_group = own_group
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.quick = 0  # exits in a row within policy.quick_seconds of a start
        self.restart_at: float | None = None
        self.restarts = 0
        # Process groups of earlier runs that may still hold processes.
        self.old_groups: list[int] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.proc = self._start()
        self.started_at = self.clock()
        self.restart_at = None

    def check(self) -> list[str]:
        """Notice an exit, restart when its delay has passed; what happened, in words."""
        now = self.clock()
        if self.old_groups:
            self.old_groups = [group for group in self.old_groups if group_alive(group)]
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return []
            return [self._exited(self.proc, code, now)]
        if self.restart_at is not None and now >= self.restart_at:
            self.start()
            self.restarts += 1
            return [f"restarted the {self.name} (pid {self.pid})"]
        return []

    def _exited(self, proc: subprocess.Popen[bytes], code: int, now: float) -> str:
        self.proc = None
        if self.own_group:
            # A killed leader leaves its pool processes behind: ask them to go too.
            _signal_group(proc, signal.SIGTERM)
            self.old_groups.append(proc.pid)
        self.quick = self.quick + 1 if now - self.started_at < self.policy.quick_seconds else 0
        if self.quick >= self.policy.max_quick:
            raise GaveUp(self.name, code, self.quick, self.policy.quick_seconds)
        delay = self.policy.delay(self.quick)
        self.restart_at = now + delay
        return (
            f"the {self.name} (pid {proc.pid}) exited ({exit_text(code)}); "
            f"restarting it in {delay:g} s"
        )

    def stop(self, timeout: float) -> None:
        """Stop the child and whatever earlier runs left behind."""
        self.restart_at = None
        if self.proc is not None:
            stop(self.proc, timeout=timeout)
        for group in self.old_groups:
            _wait_group_gone(group, 0.5)
        self.old_groups.clear()


def last_error_line(log: Path, tail_bytes: int = 64 * 1024) -> str:
    """The line of a child's log that most likely says why it stopped: the last
    non-empty line that is not indented (a traceback's frames are), not a traceback's
    header, and not a supervisor's own notice."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - tail_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "no log"
    for line in reversed(text.splitlines()):
        if line.strip() and not line[0].isspace() and not line.startswith(NOT_A_CAUSE):
            return line.strip()
    return "nothing in its log"


NOT_A_CAUSE = ("Traceback (most recent call last)", "tilecast up:", "tilecast worker:")
