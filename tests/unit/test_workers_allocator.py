"""The worker's allocator tuning (workers/allocator.py) in a child process, where it
cannot change the test session's own heap."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
from tilecast.workers.allocator import keep_freed_memory
print(keep_freed_memory(int(sys.argv[1])))
"""


def _probe(keep: int) -> str:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, str(keep)], capture_output=True, text=True, check=True
    )
    return run.stdout.strip()


def test_glibc_takes_the_thresholds() -> None:
    assert _probe(128 * 1024 * 1024) == "True"


def test_zero_keeps_glibcs_defaults() -> None:
    assert _probe(0) == "False"
