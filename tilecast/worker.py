"""``tilecast worker``: a Celery worker pool running the rendering tasks."""

from __future__ import annotations

import os

from common.protocol import QUEUES


def worker_argv(queues: str, concurrency: int, loglevel: str) -> list[str]:
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise SystemExit(f"--queues: unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    return [
        "worker",
        f"--queues={','.join(names)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        # Each process gets its own node name so several workers on one host never clash.
        f"--hostname=tilecast-{os.getpid()}@%h",
        # Worker-to-worker synchronisation is not used; skipping it saves a second at start.
        "--without-mingle",
        "--without-gossip",
    ]


def run_worker(queues: str, concurrency: int, loglevel: str) -> None:
    # Imported here: only worker processes load the rendering engine (pyvips, numpy).
    from workers.celeryapp import app

    app.worker_main(worker_argv(queues, concurrency, loglevel))
