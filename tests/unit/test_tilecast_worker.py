"""``tilecast worker``'s node layout and the bulk node's CPU priority."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tilecast.worker import node_name, node_queues, parse_queues

REPO = Path(__file__).resolve().parents[2]


def test_nodes_and_their_queues() -> None:
    assert parse_queues("bulk,interactive,bulk") == ["bulk", "interactive"]
    node = node_name("interactive")
    assert node.startswith(f"interactive-{os.getpid()}@")
    assert node_queues("interactive", node) == [f"interactive.{node}", "interactive"]
    assert node_queues("bulk", node_name("bulk")) == ["bulk"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_bulk_priority_is_inherited_by_what_it_starts() -> None:
    code = (
        "import os, subprocess, sys\n"
        "from tilecast.worker import lower_priority\n"
        "lower_priority(19)\n"
        "child = 'import os; print(os.nice(0), os.sched_getscheduler(0) == os.SCHED_IDLE)'\n"
        "run = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)\n"
        "print(run.stdout)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert out.split() == ["19", "True"]
