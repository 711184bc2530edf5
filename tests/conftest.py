"""Shared test infrastructure: a real redis-server, generated images, real Celery worker
processes and the real api over HTTP.

Session-scoped fixtures start each process once for the whole run:

- ``redis_server`` / ``redis_url`` / ``state``: a private redis-server on a free port
  (tilecast.redis_server, never 127.0.0.1:6379) and a client of it.
- ``redis_cluster``: a private three-primary Redis Cluster for cache-cluster tests.
- ``images``: generated test images (name -> path) in the source root ``source_root``;
  ``outside_file`` is a readable image outside that root.
- ``tilecast_env``: the ``TILECAST_*`` environment of every child process.
- ``worker``: ``python -m tilecast worker --concurrency 2``, waited for until it answers.
- ``api``: ``python -m tilecast api`` on a free port, waited for on /healthz; an
  :class:`ApiServer` with ``url()``, ``get()``, ``register()``.
- ``sources``: the good images registered through ``POST /sources`` (name -> id).
- ``start_api``: a factory for extra api processes with other settings (stopped after
  the test).
- ``start_worker``: a factory for extra single-pool worker nodes (``--queues``), waited
  for until they register in the state Redis; stopped after the test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.rediscluster import RedisClusterServers
from tilecast import procs
from tilecast.common.redisconn import connect
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import make_celery
from tilecast.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PROCESS_START_TIMEOUT = 60.0
BAD_IMAGES = frozenset({"corrupt", "damaged"})


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), maxmemory="1gb")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A private three-primary Redis Cluster (tests/rediscluster.py), for the cache Redis
    only; ``redis_cluster.url`` is its ``redis+cluster://`` URL."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def state(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def settings(redis_url: str, source_root: Path) -> Settings:
    """Settings of an in-process api (unit tests) against the test Redis."""
    return Settings(
        cache_url=redis_url, source_roots=(str(source_root),), auto_precache=0, prefetch=0
    ).resolved()


# --- Images ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="session")
def images(source_root: Path) -> dict[str, Path]:
    """Small images of every supported kind, plus bad files: ``corrupt`` (truncated)
    and ``damaged`` (tile data overwritten with noise)."""
    from tests.images import make_test_images  # pyvips: only loaded when images are needed

    return make_test_images(source_root)


@pytest.fixture(scope="session")
def frame_images(source_root: Path) -> dict[str, Path]:
    """Multi-frame, OME, uint16/int16/float32, 1-6 band and SVS-like files (name -> path);
    see tests/images_frames.py FRAME_IMAGES for what each holds."""
    from tests.images_frames import make_frame_images

    return make_frame_images(source_root / "frames")


@pytest.fixture(scope="session")
def outside_file(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path]) -> Path:
    """A readable image that is not below the source root."""
    path = tmp_path_factory.mktemp("outside") / "outside.png"
    shutil.copy(images["png"], path)
    return path


# --- Processes -------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        procs.stop(self.proc, timeout=20)


def start_child(name: str, argv: list[str], env: Mapping[str, str], logs: Path) -> Child:
    log = logs / f"{name}.log"
    return Child(name, procs.spawn(argv, env=env, log=log, cwd=REPO), log)


def wait_until(what: str, predicate: Callable[[], Any], child: Child, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            value = predicate()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; last lines of {child.log}:\n{child.tail()}")


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def tilecast_env(redis_url: str, source_root: Path) -> dict[str, str]:
    return procs.child_environment(
        {
            "TILECAST_CACHE_URL": redis_url,
            "TILECAST_SOURCE_ROOTS": str(source_root),
            "TILECAST_LOG_LEVEL": "INFO",
            # Registering the test images must not start background pre-rendering jobs
            # (tests count renders); tests/integration/test_jobs.py turns it on itself.
            "TILECAST_AUTO_PRECACHE": "0",
            # Nor prefetch (renders are counted); tests of it turn it on themselves.
            "TILECAST_PREFETCH": "0",
            # Whole-image decodes shared on disk: this session's own folder.
            "TILECAST_DECODE_CACHE_DIR": str(source_root.parent / "decoded"),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        },
        keep_tilecast=False,
    )


def launch_worker(
    env: Mapping[str, str], logs: Path, name: str = "worker", concurrency: int = 2
) -> Child:
    """``tilecast worker`` (both pools), returned once its two nodes answer a ping."""
    argv = [sys.executable, "-m", "tilecast", "worker", "--concurrency", str(concurrency)]
    child = start_child(name, argv, env, logs)
    celery = make_celery(Settings.from_env(dict(env)))
    try:
        # Two nodes answer: the interactive one and the bulk one (tilecast/worker.py).
        wait_until(
            f"both nodes of {name} to answer a ping",
            lambda: len(celery.control.ping(timeout=0.5)) >= 2,
            child,
            PROCESS_START_TIMEOUT,
        )
    except BaseException:
        child.stop()
        raise
    finally:
        celery.close()
    return child


@pytest.fixture(scope="session")
def worker(tilecast_env: dict[str, str], logs_dir: Path) -> Iterator[Child]:
    if not (REPO / "workers" / "celeryapp.py").exists():
        pytest.fail("workers/celeryapp.py does not exist yet: no real worker to test against")
    child = launch_worker(tilecast_env, logs_dir)
    yield child
    child.stop()


@dataclass
class ApiServer:
    base: str
    child: Child
    http: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 90)
        return self.http.get(self.base + path, **kwargs)

    def register(self, path: str | Path) -> str:
        """POST /sources; the new (or existing) source's id."""
        response = self.http.post(self.base + "/sources", json={"path": str(path)}, timeout=90)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["id"])


def launch_api(env: Mapping[str, str], logs: Path, name: str = "api") -> ApiServer:
    port = free_port(HOST)
    argv = [sys.executable, "-m", "tilecast", "api", "--bind", f"{HOST}:{port}"]
    child = start_child(name, [*argv, "--workers", "2", "--threads", "16"], env, logs)
    server = ApiServer(f"http://{HOST}:{port}", child)
    try:
        wait_until(
            f"{name} /healthz",
            lambda: server.get("/healthz", timeout=2).status_code == 200,
            child,
            PROCESS_START_TIMEOUT,
        )
    except BaseException:
        child.stop()
        raise
    return server


@pytest.fixture(scope="session")
def api(tilecast_env: dict[str, str], logs_dir: Path, worker: Child) -> Iterator[ApiServer]:
    server = launch_api(tilecast_env, logs_dir)
    yield server
    server.http.close()
    server.child.stop()


@pytest.fixture
def start_api(
    tilecast_env: dict[str, str], logs_dir: Path
) -> Iterator[Callable[[Mapping[str, str]], ApiServer]]:
    started: list[ApiServer] = []

    def start(overrides: Mapping[str, str]) -> ApiServer:
        server = launch_api({**tilecast_env, **overrides}, logs_dir, f"api-{len(started) + 1}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.http.close()
        server.child.stop()


@pytest.fixture(scope="session")
def sources(api: ApiServer, images: dict[str, Path]) -> dict[str, str]:
    """Every readable test image registered over HTTP: name -> source id."""
    good = {name: path for name, path in images.items() if name not in BAD_IMAGES}
    return {name: api.register(path) for name, path in good.items()}


@pytest.fixture(scope="session")
def frame_sources(api: ApiServer, frame_images: dict[str, Path]) -> dict[str, str]:
    """Every file of ``frame_images`` registered over HTTP: name -> source id."""
    return {name: api.register(path) for name, path in frame_images.items()}


@dataclass
class WorkerNode:
    """An extra worker node started by ``start_worker``: its process and its name."""

    child: Child
    node: str


@pytest.fixture
def start_worker(
    tilecast_env: dict[str, str], logs_dir: Path, state: redis.Redis
) -> Iterator[Callable[..., WorkerNode]]:
    from tilecast.common.workers_live import read_workers

    started: list[WorkerNode] = []

    def start(
        queues: str = "interactive",
        concurrency: int = 1,
        overrides: Mapping[str, str] | None = None,
    ) -> WorkerNode:
        name = f"worker-{queues}-{len(started) + 1}"
        argv = [sys.executable, "-m", "tilecast", "worker", "--queues", queues]
        env = {**tilecast_env, **(overrides or {})}
        child = start_child(name, [*argv, "--concurrency", str(concurrency)], env, logs_dir)
        # A single-pool worker runs its node in the process started (tilecast/worker.py).
        info = wait_until(
            f"{name} to register",
            lambda: [w for w in read_workers(state) if w.pid == child.proc.pid],
            child,
            PROCESS_START_TIMEOUT,
        )
        started.append(WorkerNode(child, info[0].node))
        return started[-1]

    yield start
    for node in started:
        node.child.stop()
