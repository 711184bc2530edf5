"""Process plumbing shared by the benchmarks: free ports, child processes, Redis, tilecast.

Every child runs in its own session (process group), writes its output to a log file in
the run's scratch folder and is stopped -- SIGTERM to its group, SIGKILL after a grace
period -- when the :class:`Processes` it was started from closes, however the run ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tilecast import procs, redis_server

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A benchmark could not run; the message says why (and where the logs are)."""


def run_side(module: str, spec: dict[str, Any], timeout: float, python: str = "") -> Any:
    """Run ``python -m module`` (large_image's side of a comparison, in its own process;
    ``python``: another interpreter than this one, such as another virtualenv's) with
    ``spec`` as JSON on stdin; its JSON answer, or BenchError with its stderr."""
    out = subprocess.run(
        [python or sys.executable, "-m", module],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"{module} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def free_port() -> int:
    return redis_server.free_port(HOST)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.proc.returncode}; last lines of {self.log}:\n"
                + self.tail()
            )


@dataclass
class Processes:
    """The children of one benchmark; a context manager that always stops them all.

    Children are started with ``tilecast.procs.spawn`` (own process group, asked to die
    with this process) and stopped with ``tilecast.procs.stop`` (the whole group).
    """

    scratch: Path
    children: list[Child] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
    ) -> Child:
        self.scratch.mkdir(parents=True, exist_ok=True)
        log = self.scratch / f"{name}.log"
        full_env = procs.child_environment(
            {"PYTHONUNBUFFERED": "1", **(env or {})}, keep_tilecast=False
        )
        child = Child(name, procs.spawn(argv, env=full_env, log=log, cwd=cwd), log)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float = 10.0) -> None:
        procs.stop(child.proc, timeout=grace)
        if child in self.children:
            self.children.remove(child)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self.cleanups.append(cleanup)

    def close(self) -> None:
        for child in reversed(list(self.children)):
            with contextlib.suppress(Exception):
                self.stop(child)
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self.cleanups.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(what: str, predicate: Any, timeout: float, children: Sequence[Child] = ()) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with the children's logs."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for child in children:
            child.check_alive()
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        time.sleep(0.05)
    logs = "\n".join(f"--- {c.name} ({c.log}) ---\n{c.tail()}" for c in children)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}: {last_error}\n{logs}")


# --- Redis ---------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def start_redis(procs_: Processes, name: str = "redis", maxmemory: str = "4gb") -> RedisServer:
    """A throw-away redis-server on a free port (never the machine's 6379), started by
    tilecast's own ``tilecast.redis_server`` as the test suite and ``tilecast up`` do."""
    server = redis_server.RedisServer(procs_.scratch / name, host=HOST, maxmemory=maxmemory)
    procs_.on_close(server.stop)
    server.start()
    return RedisServer(server.port, procs_.scratch / name / "redis.log")


# --- HTTP ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """One keep-alive connection (http.client: the lightest client in the standard library)."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
            except (ConnectionError, http.client.HTTPException):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def close(self) -> None:
        self.conn.close()


def http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 500
    finally:
        conn.close()


# --- tilecast ------------------------------------------------------------------------


def tilecast_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tilecast", *args]


def tilecast_env(redis_url: str, source_roots: Sequence[Path], **extra: Any) -> dict[str, str]:
    env = {
        "TILECAST_CACHE_URL": redis_url,
        "TILECAST_SOURCE_ROOTS": os.pathsep.join(str(p) for p in source_roots),
        "TILECAST_LOG_LEVEL": "WARNING",
        # Each benchmark measures one thing: no background pre-rendering of the sources
        # it registers (the precache benchmark submits its own jobs).
        "TILECAST_AUTO_PRECACHE": "0",
        # Nor prefetch: renders are counted against the tiles asked (the fullview
        # benchmark turns it on and off itself).
        "TILECAST_PREFETCH": "0",
    }
    env.update({f"TILECAST_{k.upper()}": str(v) for k, v in extra.items()})
    return env


@dataclass
class Stack:
    """A running tilecast: its Redis, one Celery worker (N pool processes), one api."""

    redis: RedisServer
    worker: Child | None
    api: Child | None
    api_port: int
    env: dict[str, str]

    def http(self) -> Http:
        return Http(self.api_port)


def start_worker(
    procs: Processes, env: Mapping[str, str], concurrency: int, name: str = "worker"
) -> Child:
    argv = tilecast_argv(
        "worker", "--queues", "interactive,bulk", "--concurrency", str(concurrency)
    )
    return procs.start(name, argv, env)


def wait_worker_ready(state: redis.Redis, env: Mapping[str, str], child: Child) -> None:
    """Until a Celery worker answers a ping on the broker."""
    from tilecast.common.settings import Settings
    from tilecast.common.taskprotocol import make_celery

    app = make_celery(Settings.from_env(env))

    def pong() -> bool:
        return bool(app.control.ping(timeout=0.5))

    wait_for("the Celery worker", pong, 60, [child])


def start_api(
    procs: Processes,
    env: Mapping[str, str],
    *,
    workers: int,
    threads: int,
    name: str = "api",
    server: str | None = None,
) -> tuple[Child, int]:
    port = free_port()
    argv = tilecast_argv(
        "api",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    )
    if server:  # else tilecast's default server
        argv += ["--server", server]
    child = procs.start(name, argv, env)
    wait_for(f"tilecast api on port {port}", lambda: http_ok(port, "/healthz"), 60, [child])
    return child, port


def start_stack(
    procs: Processes,
    source_roots: Sequence[Path],
    *,
    worker_concurrency: int,
    api_workers: int,
    api_threads: int,
    **settings: Any,
) -> Stack:
    server = start_redis(procs)
    env = tilecast_env(server.url, source_roots, **settings)
    worker = None
    if worker_concurrency:
        worker = start_worker(procs, env, worker_concurrency)
    api, port = start_api(procs, env, workers=api_workers, threads=api_threads)
    if worker is not None:
        wait_worker_ready(server.client(), env, worker)
    return Stack(server, worker, api, port, env)


def add_source(stack: Stack, path: Path) -> str:
    http = stack.http()
    try:
        reply = http.request("POST", "/sources", {"path": str(path)})
    finally:
        http.close()
    if reply.status not in (200, 201):
        raise BenchError(f"POST /sources {path} -> {reply.status}: {reply.body[:300]!r}")
    return str(reply.json()["id"])


def tile_metadata(stack: Stack, source_id: str) -> dict[str, Any]:
    http = stack.http()
    try:
        reply = http.get(f"/item/{source_id}/tiles")
    finally:
        http.close()
    if reply.status != 200:
        raise BenchError(f"GET /item/{source_id}/tiles -> {reply.status}: {reply.body[:300]!r}")
    return reply.json()


def tile_path(source_id: str, z: int, x: int, y: int, frame: int | None = None) -> str:
    if frame is not None:
        return f"/item/{source_id}/tiles/fzxy/{frame}/{z}/{x}/{y}"
    return f"/item/{source_id}/tiles/zxy/{z}/{x}/{y}"


def level_tiles(meta: Mapping[str, Any], z: int) -> list[tuple[int, int]]:
    """Every (x, y) of level ``z`` (0 = the coarsest, ``levels - 1`` = full resolution)."""
    scale = 2 ** (int(meta["levels"]) - 1 - z)
    width = -(-int(meta["sizeX"]) // scale)
    height = -(-int(meta["sizeY"]) // scale)
    nx = -(-width // int(meta["tileWidth"]))
    ny = -(-height // int(meta["tileHeight"]))
    return [(x, y) for y in range(ny) for x in range(nx)]


def delete_keys(client: redis.Redis, *patterns: str) -> int:
    """Delete every key matching ``patterns`` (SCAN, never KEYS); returns how many."""
    removed = 0
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(client.unlink(*batch))
                batch = []
        if batch:
            removed += int(client.unlink(*batch))
    return removed


@dataclass(frozen=True)
class BenchContext:
    """What every benchmark gets from the runner."""

    scratch: Path  # this run's logs and Redis files
    image_dir: Path  # generated images, kept between runs; the source root
    pyramid: Path  # pyramidal JPEG TIFF
    single: Path  # the same pixels, one level
    wrk: str  # the wrk binary ("" when the hit benchmark is not run)
    quick: bool


def generation(stack: Stack, source_id: str) -> int:
    from tilecast.common.registry import SourceRegistry

    value = SourceRegistry(stack.redis.client()).generation(source_id)
    if value is None:
        raise BenchError(f"source {source_id} has no generation")
    return value


def stats(stack: Stack) -> dict[str, int]:
    from tilecast.common import counters

    return counters.read(stack.redis.client())


def settled(
    read: Callable[[], dict[str, int]],
    done: Callable[[dict[str, int]], bool] = lambda _counts: True,
    timeout: float = 15.0,
) -> dict[str, int]:
    """The counters once the last answers' bookkeeping is in: workers and api processes
    flush their counts about once a second. Polls ``read`` until ``done`` holds and
    nothing moved for two and a half flush periods, or until ``timeout`` (a shortfall is
    then the caller's to report)."""
    from tilecast.common import counters

    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    stable_since = time.monotonic()
    while True:
        now = read()
        if now != last:
            last, stable_since = now, time.monotonic()
        quiet = time.monotonic() - stable_since >= 2.5 * counters.FLUSH_SECONDS
        if (done(now) and quiet) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)
