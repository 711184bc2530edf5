"""``tilecast up`` as an operator lives with it, with real processes: it restarts what
dies and keeps the api and Redis up meanwhile, gives up clearly on a child that cannot
start, stops on SIGINT even when started with SIGINT ignored, keeps its state Redis
apart from its evicting cache Redis, and says in one line when its port is taken."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REPO
from tests.integration.faultsupport import ANSWER_SLACK, Tally, fetch
from tilecast import procs
from tilecast.common.jobstore import JobStore
from tilecast.common.redisconn import connect
from tilecast.common.workers_live import WorkerInfo, read_workers
from tilecast.redis_server import free_port

pytestmark = pytest.mark.integration

RENDER_TIMEOUT = 10.0
BACK_WITHIN = 15.0  # seconds within which a killed worker must be serving again
START_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def up_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4096 x 4096 pyramid (341 tiles a style): enough cold tiles for a minute."""
    from tilecast.sample import sample_image, write_tiff

    path = tmp_path_factory.mktemp("up-images") / "up.tiff"
    write_tiff(sample_image(4096, 4096), path, pyramid=True)
    return path


@dataclass
class Up:
    """A running ``tilecast up`` and everything it printed, read in a thread."""

    proc: subprocess.Popen[str]
    data_dir: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, marker: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if marker in line]
            if found:
                return found[0]
            if self.proc.poll() is not None and self.reader is not None:
                self.reader.join(5)
                found = [line for line in self.lines if marker in line]
                if found:
                    return found[0]
                break
            time.sleep(0.1)
        raise AssertionError(f"no line with {marker!r} from tilecast up:\n{self.output}")

    @property
    def base(self) -> str:
        return self.wait_for_line("tilecast is up at").split()[4].rstrip(";")

    def redis_url(self, role: str) -> str:
        return self.wait_for_line(f"redis      {role} ").split()[2]

    def source_id(self) -> str:
        return self.wait_for_line("  id ").split()[-1]

    def descendants(self) -> set[int]:
        return procs.descendants(self.proc.pid)


def start_up(
    tmp_path: Path,
    image: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> Up:
    target = tmp_path / "images" / image.name
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        os.link(image, target)
    overrides = {
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "TILECAST_RENDER_TIMEOUT": str(RENDER_TIMEOUT),
        **(env or {}),
    }
    argv = [
        *[sys.executable, "-m", "tilecast", "up", str(target)],
        *["--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        *["--concurrency", "1", "--api-workers", "1", *args],
    ]
    proc = subprocess.Popen(
        argv,
        env=procs.child_environment(overrides, keep_tilecast=False),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    up = Up(proc, tmp_path / "data")
    up.reader = threading.Thread(target=up.read, daemon=True)
    up.reader.start()
    return up


@pytest.fixture
def running() -> Iterator[list[Up]]:
    """Every ``up`` a test starts is stopped at its end, whatever happened."""
    started: list[Up] = []
    yield started
    for up in started:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGTERM)
            try:
                up.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.proc.kill()
                up.proc.wait()


def stop_and_check_nothing_left(up: Up, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop ``up`` with ``sig``: it exits 0 and leaves no process behind."""
    left = up.descendants()
    assert left, "tilecast up started no child"
    up.proc.send_signal(sig)
    assert up.proc.wait(timeout=60) == 0, up.output
    assert_gone(left)


def assert_gone(pids: set[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(procs.alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [f"{pid}: {cmdline(pid)}" for pid in pids if procs.alive(pid)]
    assert not left, f"processes outlived tilecast up: {left}"


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children_of(pid: int, marker: str) -> list[int]:
    """Live direct children of ``pid`` whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = procs._proc_stat(entry)
            if (
                stat
                and stat[0] != "Z"
                and int(stat[1]) == pid
                and marker in cmdline(int(entry.name))
            ):
                found.append(int(entry.name))
    return found


def one_child(pid: int, marker: str) -> int:
    found = children_of(pid, marker)
    assert len(found) == 1, (marker, found)
    return found[0]


def live_node(state: redis.Redis, role: str, not_pid: int) -> WorkerInfo | None:
    nodes = [w for w in read_workers(state) if w.role == role and w.pid != not_pid]
    return nodes[0] if nodes else None


def wait_for(what: str, predicate: Callable[[], object], timeout: float) -> float:
    """Seconds until ``predicate`` held."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:g} s")


class ColdLoad:
    """Client threads asking tiles never asked before, until stopped."""

    def __init__(self, base: str, source: str, threads: int = 3) -> None:
        self.base = base
        self.tally = Tally(limit=RENDER_TIMEOUT + ANSWER_SLACK)
        self._paths = (
            f"/item/{source}/tiles/zxy/4/{i % 16}/{i // 16 % 16}?encoding=WEBP&webpQuality="
            f"{1 + i // 256}"
            for i in count()
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                with self._lock:
                    path = next(self._paths)
                fetch(session, self.base, path, self.tally)

    def __enter__(self) -> ColdLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(RENDER_TIMEOUT + 40)


def test_killed_worker_processes_are_restarted_while_the_api_serves(
    tmp_path: Path, up_image: Path, running: list[Up]
) -> None:
    """SIGKILL of the interactive node, the bulk node, then the worker launcher, while
    clients ask cold tiles: each is back within 15 s, every request is answered (a
    tile, or a 503/504 within the render timeout; no connection error), the same api
    process serves throughout, and ``up`` says what it restarted."""
    up = start_up(tmp_path, up_image)
    running.append(up)
    base, source = up.base, up.source_id()
    state = connect(up.redis_url("state"))
    api = one_child(up.proc.pid, " api ")
    launcher = one_child(up.proc.pid, " worker ")
    wait_for("a live interactive and bulk node", lambda: len(read_workers(state)) == 2, 60)
    recovery: dict[str, float] = {}
    with ColdLoad(base, source) as load:
        wait_for("a first tile", lambda: load.tally.ok > 0, 60)
        for role in ("interactive", "bulk"):
            node = one_child(launcher, f"--queues {role}")
            os.kill(node, signal.SIGKILL)
            recovery[role] = wait_for(
                f"the {role} node back", lambda r=role, n=node: live_node(state, r, n), BACK_WITHIN
            )
        nodes = {w.pid for w in read_workers(state)}
        os.kill(launcher, signal.SIGKILL)
        recovery["launcher"] = wait_for(
            "both nodes back after the launcher's death",
            lambda: len({w.pid for w in read_workers(state)} - nodes) == 2,
            BACK_WITHIN,
        )
        served = load.tally.ok
        wait_for("tiles again", lambda: load.tally.ok > served + 3, RENDER_TIMEOUT)
    print(load.tally.line("cold tiles while worker processes were killed"), recovery)
    assert load.tally.failed == 0, load.tally.failures
    assert load.tally.sent >= 10  # requests kept flowing (how many depends on the load)
    assert one_child(up.proc.pid, " api ") == api, "the api was restarted"
    assert one_child(up.proc.pid, " worker ") != launcher
    assert requests.get(base + "/readyz", timeout=10).status_code == 200
    for said in (
        "tilecast worker: the interactive node",
        "tilecast worker: restarted the interactive node",
        "tilecast worker: restarted the bulk node",
        f"tilecast up: the worker (pid {launcher}) exited (killed by SIGKILL)",
        "tilecast up: restarted the worker",
    ):
        assert said in up.output, f"{said!r} not in:\n{up.output}"
    assert "tilecast up: restarted the worker" in (up.data_dir / "logs/worker.log").read_text()
    state.close()
    stop_and_check_nothing_left(up)


def test_a_worker_that_dies_at_start_ends_up_after_bounded_tries(
    tmp_path: Path, up_image: Path, running: list[Up]
) -> None:
    """A setting only the worker cannot use (a broker transport that does not exist;
    the api sends nothing at start): ``up`` restarts the worker a bounded number of
    times, then exits non-zero with one line naming it and the cause."""
    up = start_up(
        tmp_path,
        up_image,
        env={"TILECAST_BROKER_URL": "nosuchtransport://localhost", "TILECAST_AUTO_PRECACHE": "0"},
    )
    running.append(up)
    up.wait_for_line("tilecast up: restarted the worker", timeout=START_TIMEOUT)
    left = up.descendants()
    assert up.proc.wait(timeout=60) == 1, up.output
    up.reader.join(5)  # type: ignore[union-attr]
    final = [line for line in up.lines if line.startswith("tilecast up: the worker exited")]
    assert len(final) == 1, up.output
    assert re.search(r"exited \(status \d+\) 5 times in a row", final[0]), final[0]
    assert "No such transport: nosuchtransport" in final[0], final[0]
    assert str(up.data_dir / "logs" / "worker.log") in final[0]
    assert up.output.count("tilecast up: restarted the worker") == 4
    assert_gone(left)


def test_sigint_stops_an_up_started_with_sigint_ignored(
    tmp_path: Path, up_image: Path, running: list[Up]
) -> None:
    """Started in the background from a script, ``up`` inherits SIGINT ignored; a
    SIGINT still stops it and every child it started, Redis servers included."""
    up = start_up(
        tmp_path, up_image, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    running.append(up)
    up.wait_for_line("tilecast is up")
    left = up.descendants()
    assert len([pid for pid in left if "redis-server" in cmdline(pid)]) == 2
    stop_and_check_nothing_left(up, signal.SIGINT)


def test_cache_past_maxmemory_keeps_state_and_readiness(
    tmp_path: Path, up_image: Path, running: list[Up]
) -> None:
    """The cache Redis filled far past its maxmemory while a pre-rendering job runs:
    it evicts, but /readyz stays 200, and the job record and worker heartbeats, which
    live in the state Redis, remain; the job finishes."""
    up = start_up(tmp_path, up_image, args=("--cache-memory", "16mb"))
    running.append(up)
    base, source = up.base, up.source_id()
    cache = connect(up.redis_url("cache"))
    state = connect(up.redis_url("state"))
    assert cache.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert state.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert state.config_get("appendonly")["appendonly"] == "yes"
    wait_for("live workers", lambda: len(read_workers(state)) == 2, 60)
    created = requests.post(
        f"{base}/item/{source}/tiles/precache",
        json={"levels": "0-4", "encoding": "PNG"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    block = os.urandom(1024 * 1024)
    for i in range(48):  # 3 x maxmemory, no TTL: only allkeys-lru can evict them
        cache.set(f"filler:{i}", block)
        if i % 8 == 0:
            assert requests.get(base + "/readyz", timeout=10).status_code == 200
    assert int(cache.info("stats")["evicted_keys"]) > 0, "the cache never reached maxmemory"
    during = JobStore(state).get(job_id)
    print(f"job {job_id} when the cache was full: {during.state}, {during.done}/{during.total}")
    assert during.state == "running", "the job ended before the cache was filled"
    assert requests.get(base + "/readyz", timeout=10).status_code == 200
    assert {w.role for w in read_workers(state)} == {"interactive", "bulk"}
    wait_for("the job to end", lambda: JobStore(state).get(job_id).state != "running", 120)
    record = requests.get(f"{base}/jobs/{job_id}", timeout=10).json()
    assert record["state"] == "finished" and record["failed"] == 0, record
    assert requests.get(base + "/readyz", timeout=10).status_code == 200
    # Nothing of the state's kind sits in the cache Redis, where it could be evicted.
    state_kinds = ("tc:job", "tc:worker", "tc:sources", "tc:gen", "tc:inflight", "_kombu", "celery")
    misplaced = [k for k in cache.scan_iter(count=1000) if k.decode().startswith(state_kinds)]
    assert not misplaced, misplaced[:10]
    cache.close()
    state.close()
    stop_and_check_nothing_left(up)


def test_port_in_use_is_one_line(tmp_path: Path, up_image: Path, running: list[Up]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start_up(tmp_path, up_image, args=("--port", str(port)))
        running.append(up)
        assert up.proc.wait(timeout=30) == 2
        up.reader.join(5)  # type: ignore[union-attr]
    assert len(up.lines) == 1, up.output
    assert f"port {port}" in up.lines[0] and "--port" in up.lines[0], up.lines[0]
    assert not up.descendants()
    assert not (up.data_dir / "redis").exists(), "Redis was started before the port check"
