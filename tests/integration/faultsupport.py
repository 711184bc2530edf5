"""Helpers of the fault tests (tests/integration/test_faults.py): a private tilecast
stack on its own Redis databases, and a threaded load that classifies every answer.

A stack's state (broker, markers, registrations) lives in a database of the suite's
redis-server that no other test uses, so the session worker never takes its tasks and
its workers never take the session's; its cache is wherever the test says.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from tests.conftest import HOST, PROCESS_START_TIMEOUT, ApiServer, Child, start_child, wait_until
from tilecast.common.workers_live import read_workers
from tilecast.redis_server import free_port

# A 503/504 may come this much later than the render timeout (the last re-check, the
# HTTP round trip, a loaded CI machine).
ANSWER_SLACK = 5.0


def redis_db(url: str, db: int) -> str:
    """``url`` with its database number replaced."""
    return f"{url.rsplit('/', 1)[0]}/{db}"


def copy_image(source: Path, root: Path, name: str) -> Path:
    """A copy under a new path: a new source id, so no other test shares its tiles."""
    target = root / name
    if not target.exists():
        shutil.copy(source, target)
    return target


@dataclass
class Node:
    """One ``tilecast worker --queues ...`` process: its node name and process group."""

    child: Child
    node: str

    @property
    def pid(self) -> int:
        return self.child.proc.pid


def launch_node(
    env: Mapping[str, str],
    logs: Path,
    state: redis.Redis,
    name: str,
    queues: str = "interactive",
    concurrency: int = 1,
) -> Node:
    """A single-pool worker node, returned once it registered in ``state``."""
    argv = [sys.executable, "-m", "tilecast", "worker", "--queues", queues]
    child = start_child(name, [*argv, "--concurrency", str(concurrency)], env, logs)
    try:
        info = wait_until(
            f"{name} to register",
            lambda: [w for w in read_workers(state) if w.pid == child.proc.pid],
            child,
            PROCESS_START_TIMEOUT,
        )
    except BaseException:
        child.stop()
        raise
    return Node(child, info[0].node)


def launch_api_on(env: Mapping[str, str], logs: Path, name: str, server: str) -> ApiServer:
    """``tilecast api --server {server}`` (2 processes, 16 threads), up on /healthz;
    the caller stops it."""
    port = free_port(HOST)
    argv = [sys.executable, "-m", "tilecast", "api", "--bind", f"{HOST}:{port}"]
    argv += ["--server", server, "--workers", "2", "--threads", "16"]
    api = ApiServer(f"http://{HOST}:{port}", start_child(name, argv, env, logs))
    try:
        wait_until(
            f"{name} /healthz",
            lambda: api.get("/healthz", timeout=2).status_code == 200,
            api.child,
            PROCESS_START_TIMEOUT,
        )
    except BaseException:
        api.child.stop()
        raise
    return api


# --- load ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a load sent and what came back. ``failed``: anything the guarantees rule
    out -- a 5xx other than a 503/504 with ``Retry-After`` and a JSON error, a 503/504
    later than the render timeout, a refused or reset connection, a client timeout."""

    limit: float  # seconds within which every request must be answered
    allowed: frozenset[int] = frozenset()  # other error statuses a test expects
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    served: set[str] = field(default_factory=set)  # paths answered 200 at least once
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def answered(self) -> int:
        return self.sent - self.failed

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def record(self, path: str, status: int | None, seconds: float, problem: str) -> None:
        with self.lock:
            self.sent += 1
            self.slowest = max(self.slowest, seconds)
            if status is not None:
                self.statuses[status] += 1
            if status == 200:
                self.served.add(path)
            if problem:
                self.failed += 1
                if len(self.failures) < 10:
                    self.failures.append(f"{path}: {problem}")

    def line(self, name: str) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{name}: sent {self.sent}, answered {self.answered} ({codes}), "
            f"failed {self.failed}, slowest {self.slowest:.1f} s"
        )


def problem_of(
    response: requests.Response, seconds: float, limit: float, allowed: frozenset[int]
) -> str:
    """Empty when the answer is one the guarantees allow."""
    status = response.status_code
    if status == 200:
        return ""
    if status in allowed:
        return "" if "error" in response.json() else f"{status} without a JSON error"
    if status in (503, 504):
        if "Retry-After" not in response.headers:
            return f"{status} without Retry-After"
        if "error" not in response.json():
            return f"{status} without a JSON error"
        if seconds > limit:
            return f"{status} after {seconds:.1f} s (limit {limit:.0f} s)"
        return ""
    return f"{status}: {response.text[:200]}"


def fetch(session: requests.Session, base: str, path: str, tally: Tally) -> None:
    started = time.monotonic()
    try:
        response = session.get(base + path, timeout=tally.limit + 30)
    except requests.RequestException as exc:
        tally.record(path, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        return
    seconds = time.monotonic() - started
    tally.record(
        path,
        response.status_code,
        seconds,
        problem_of(response, seconds, tally.limit, tally.allowed),
    )


def run_load(
    base: str,
    paths: Sequence[str],
    *,
    limit: float,
    threads: int = 8,
    seconds: float | None = None,
    during: Callable[[], object] | None = None,
    allowed: frozenset[int] = frozenset(),
) -> Tally:
    """Threads asking ``paths`` in turn (each thread its own keep-alive session), once
    each, or round after round for ``seconds``; ``during`` runs in this thread while
    they do (the fault). Returns when every request is answered."""
    tally = Tally(limit=limit, allowed=allowed)
    cursor = iter(_schedule(paths, seconds))
    cursor_lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            while True:
                with cursor_lock:
                    path = next(cursor, None)
                if path is None:
                    return
                fetch(session, base, path, tally)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        if during is not None:
            during()
        for future in futures:
            future.result()
    return tally


def _schedule(paths: Sequence[str], seconds: float | None) -> Iterable[str]:
    if seconds is None:
        yield from paths
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in paths:
            if time.monotonic() >= deadline:
                return
            yield path


def tile_paths(source: str, levels: Iterable[tuple[int, int, int]], query: str = "") -> list[str]:
    """``/item/{source}/tiles/zxy/z/x/y`` of every tile of each (z, columns, rows)."""
    return [
        f"/item/{source}/tiles/zxy/{z}/{x}/{y}{query}"
        for z, columns, rows in levels
        for y in range(rows)
        for x in range(columns)
    ]
