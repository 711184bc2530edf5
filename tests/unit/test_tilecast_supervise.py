"""procs.Supervised: when an exited child is started again, and when its supervisor
gives up (real short-lived processes, a hand-driven clock)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tilecast import procs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def exits_at_once(code: int) -> subprocess.Popen[bytes]:
    proc = procs.spawn([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait()
    return proc


def test_a_child_that_ran_a_while_is_restarted_after_the_first_delay() -> None:
    clock = Clock()
    starts: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        starts.append(1)
        return exits_at_once(3)

    child = procs.Supervised("thing", start, procs.RestartPolicy(quick_seconds=10), clock=clock)
    child.start()
    clock.now += 60  # it ran a minute
    (line,) = child.check()
    assert "exited (status 3); restarting it in 0.5 s" in line
    assert child.check() == []  # not before its delay
    clock.now += 0.5
    assert child.check()[0].startswith("restarted the thing (pid ")
    assert len(starts) == 2 and child.restarts == 1


def test_quick_exits_back_off_then_give_up() -> None:
    clock = Clock()
    policy = procs.RestartPolicy(quick_seconds=10, max_quick=3, first_delay=0.5, max_delay=4)
    child = procs.Supervised("worker", lambda: exits_at_once(1), policy, clock=clock)
    child.start()
    delays = []
    with pytest.raises(procs.GaveUp) as gave_up:
        for _ in range(10):
            lines = child.check()
            if lines and "restarting it in" in lines[0]:
                delays.append(float(lines[0].split("in ")[-1].rstrip(" s")))
                clock.now += delays[-1]
    assert delays == [1.0, 2.0]
    assert str(gave_up.value) == (
        "the worker exited (status 1) 3 times in a row within 10 s of starting"
    )


def test_exit_text_names_the_signal() -> None:
    assert procs.exit_text(-9) == "killed by SIGKILL"
    assert procs.exit_text(2) == "status 2"


def test_last_error_line_skips_frames_and_notices(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(
        'starting\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "    boom()\nKeyError: 'No such transport: bogus'\n\n"
        "tilecast worker: the bulk node exited (status 1); stopping\n"
    )
    assert procs.last_error_line(log) == "KeyError: 'No such transport: bogus'"
    assert procs.last_error_line(tmp_path / "none.log") == "no log"
