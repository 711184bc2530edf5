"""``tilecast worker``: Celery worker nodes running the rendering tasks.

A worker for one pool is one Celery node:

- ``--queues interactive``: consumes its own queue first (source affinity:
  ``interactive.{node}``, common/routing.py), then the shared ``interactive`` queue;
  registers and heartbeats in the state Redis (workers/heartbeat.py).
- ``--queues bulk``: consumes ``bulk`` at the OS niceness ``TILECAST_BULK_NICE`` (19 by
  default), it and its pool processes.

A worker for both (the default) runs those two nodes as child processes. Queue order
alone cannot keep bulk work from delaying interactive tiles: a pool process busy with a
block of bulk tiles holds its core until the block is done, however the queues are
ordered. Two nodes, the bulk one niced, let the kernel hand the CPU to an interactive
render the moment it starts (the measurements are in docs/CONTRACT.md). The parent
forwards SIGTERM and SIGINT to both (a warm shutdown). A node that dies after it
started (killed, out of memory) is started again, saying so on stderr; a node that dies
twice in a row right after its start (a setting it cannot use) makes the parent stop
the other and exit non-zero, for its own supervisor to retry with a back-off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from tilecast import procs
from tilecast.common.routing import affinity_queue
from tilecast.common.settings import get_settings
from tilecast.common.taskprotocol import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUES

_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 60.0


def parse_queues(queues: str) -> list[str]:
    names = list(dict.fromkeys(q.strip() for q in queues.split(",") if q.strip()))
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise SystemExit(f"--queues: unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    return names


def node_name(role: str) -> str:
    """Unique per process, so several workers on one host never clash."""
    return f"{role}-{os.getpid()}@{socket.gethostname()}"


def node_queues(role: str, node: str) -> list[str]:
    """What a node consumes, in order (the transport's ``priority`` strategy keeps it)."""
    if role == QUEUE_INTERACTIVE:
        return [affinity_queue(node), QUEUE_INTERACTIVE]
    return [QUEUE_BULK]


def worker_argv(queues: Sequence[str], node: str, concurrency: int, loglevel: str) -> list[str]:
    return [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--hostname={node}",
        # Worker-to-worker synchronisation is not used; skipping it saves a second at start.
        "--without-mingle",
        "--without-gossip",
    ]


def run_worker(queues: str, concurrency: int, loglevel: str) -> None:
    names = parse_queues(queues)
    if len(names) == 1:
        run_node(names[0], concurrency, loglevel)
        return
    code = run_pair(concurrency, loglevel)
    if code:
        raise SystemExit(code)


def run_node(role: str, concurrency: int, loglevel: str) -> None:
    """One Celery node for one pool, in this process."""
    if role == QUEUE_BULK:
        lower_priority(get_settings().bulk_nice)
    # Imported here: only worker processes load the rendering engine (pyvips, numpy).
    from tilecast.workers import heartbeat
    from tilecast.workers.allocator import keep_freed_memory
    from tilecast.workers.celeryapp import app
    from tilecast.workers.filewatch import install as install_file_watch  # starts on worker_ready
    from tilecast.workers.keeper import install as install_keeper  # starts on worker_ready

    keep_freed_memory(get_settings().worker_heap_keep)  # before the pool forks: inherited
    install_keeper()
    install_file_watch()
    heartbeat.install()
    node = node_name(role)
    argv = worker_argv(node_queues(role, node), node, concurrency, loglevel)
    if get_settings().log_format == "json":
        argv = ["--quiet", *argv]  # Celery's banner is not a log line
    app.worker_main(argv)


def lower_priority(nice: int) -> None:
    """Raise this process's niceness to ``nice`` and, on Linux, put it in the
    ``SCHED_IDLE`` class; both are inherited by the threads and pool processes it
    starts later, so this runs first.

    Niceness alone only weighs processes of one scheduling group (an autogroup per
    session, a cgroup per service) against each other: the api and Redis, in groups of
    their own, would still share a core evenly with bulk renders. A ``SCHED_IDLE`` task
    is preempted at once by any other task that wakes up, whatever its group."""
    current = os.nice(0)
    if nice > current:
        os.nice(nice - current)
    if nice > 0 and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


# A node that dies twice in a row right after its start (a bad setting) ends the launcher:
# its own supervisor (``tilecast up``, systemd, Kubernetes) retries with a back-off, so
# retries multiply by two at most. One early death alone (a node killed soon after
# the stack started) is only restarted.
NODE_RESTARTS = procs.RestartPolicy(max_quick=2)


def run_pair(concurrency: int, loglevel: str) -> int:
    """An interactive and a bulk node as children, each restarted when it dies; the
    exit status (non-zero when a node failed at start)."""
    base = [sys.executable, "-m", "tilecast", "worker", "--concurrency", str(concurrency)]

    def starter(role: str) -> Callable[[], subprocess.Popen[bytes]]:
        return lambda: subprocess.Popen(
            [*base, "--loglevel", loglevel, "--queues", role],
            stdin=subprocess.DEVNULL,
            # Same process group: stopping the group stops both nodes and their pools.
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    nodes = [
        procs.Supervised(f"{role} node", starter(role), NODE_RESTARTS, own_group=False)
        for role in (QUEUE_INTERACTIVE, QUEUE_BULK)
    ]
    stopping = False  # a signal asked us to stop

    def stop_nodes(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for node in nodes:
            node.restart_at = None
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)  # a warm shutdown (idempotent)

    signal.signal(signal.SIGTERM, stop_nodes)
    signal.signal(signal.SIGINT, stop_nodes)
    for node in nodes:
        node.start()
    failed = False
    while not stopping and not failed:
        for node in nodes:
            try:
                lines = node.check()
            except procs.GaveUp as gave_up:
                lines = [f"{gave_up}; stopping"]
                failed = True
            for line in lines:
                print(f"tilecast worker: {line}", file=sys.stderr, flush=True)
        time.sleep(0.2)
    stop_nodes(signal.SIGTERM, None)
    deadline = time.monotonic() + STOP_TIMEOUT
    for node in nodes:
        if node.proc is None:
            continue
        try:
            node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
    return 1 if failed else 0


def _die_with_parent() -> None:
    # Runs in the child between fork and exec; best effort, Linux only.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
