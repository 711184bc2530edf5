"""``tilecast api --server NAME`` for every server: a real process serving real tiles over
keep-alive connections, hits answered while other requests wait for a render, and a
graceful stop on SIGTERM that lets a waiting request finish."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.conftest import (
    HOST,
    PROCESS_START_TIMEOUT,
    ApiServer,
    Child,
    start_child,
    wait_until,
)
from tilecast import procs
from tilecast.common.inflight import DONE_CHANNEL, inflight_key
from tilecast.redis_server import free_port
from tilecast.servers import SERVERS

pytestmark = pytest.mark.integration

WORKERS, THREADS = 1, 4
# Requests bounded_api lets wait at once: more than its THREADS.
MAX_WAITING = 6


class Api:
    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port

    def get(self, path: str, timeout: float = 90) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()


@pytest.fixture(params=SERVERS)
def server_api(
    request: pytest.FixtureRequest,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    worker: Child,
) -> Iterator[Api]:
    with serving(str(request.param), tilecast_env, logs_dir) as api:
        yield api


@pytest.fixture(params=SERVERS)
def bounded_api(
    request: pytest.FixtureRequest,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    worker: Child,
) -> Iterator[Api]:
    """As ``server_api``, letting MAX_WAITING requests wait at once, more than THREADS."""
    env = {**tilecast_env, "TILECAST_MAX_WAITING": str(MAX_WAITING)}
    with serving(str(request.param), env, logs_dir, name="bounded") as api:
        yield api


@contextlib.contextmanager
def serving(server: str, env: dict[str, str], logs_dir: Path, name: str = "api") -> Iterator[Api]:
    port = free_port(HOST)
    argv = [
        *[sys.executable, "-m", "tilecast", "api", "--bind", f"{HOST}:{port}"],
        *["--workers", str(WORKERS), "--threads", str(THREADS), "--server", server],
    ]
    child = start_child(f"{name}-{server}", argv, env, logs_dir)
    api = Api(child, port)
    try:
        wait_until(
            f"{server} /healthz",
            lambda: api.get("/healthz", timeout=2)[0] == 200,
            child,
            PROCESS_START_TIMEOUT,
        )
        yield api
    finally:
        child.stop()


def tile_path(source: str, z: int, x: int, y: int) -> str:
    return f"/item/{source}/tiles/zxy/{z}/{x}/{y}"


def cold_tile(state: redis.Redis, api: ApiServer, source: str, z: int, x: int) -> tuple[str, str]:
    """A tile of ``source`` (level ``z``, column ``x``, row 0) that is not in the cache,
    and its cache key: tile (z, 0, 0) is rendered to learn the key's shape -- by the
    session's api, so that the server under test has had no miss yet (its completion
    listener subscribes on its first miss: how a test sees that a request waits)."""
    assert api.get(tile_path(source, z, 0, 0)).status_code == 200
    pattern = f"tc:tile:{source}:*:{z}:0:0:*"
    keys = [k.decode() for k in state.scan_iter(match=pattern, count=1000)]
    assert keys, f"no cached key matches {pattern}"
    head, tail = keys[0].split(f":{z}:0:0:")
    key = f"{head}:{z}:{x}:0:{tail}"
    state.delete(key)
    return tile_path(source, z, x, 0), key


def subscribers(state: redis.Redis) -> int:
    return int(dict(state.pubsub_numsub(DONE_CHANNEL)).get(DONE_CHANNEL.encode(), 0))


def start_waiting(
    pool: ThreadPoolExecutor,
    api: Api,
    path: str,
    state: redis.Redis,
    baseline: int | None,
) -> Future[tuple[int, dict[str, str], bytes]]:
    """Ask ``path`` (whose in-flight marker is held, so the request waits) in the pool;
    once the api's completion listener subscribes (its first waiter), the request is
    inside its wait."""
    future = pool.submit(api.get, path, 120)
    if baseline is not None:
        wait_until(
            "the api's completion listener",
            lambda: subscribers(state) > baseline,
            api.child,
            PROCESS_START_TIMEOUT,
        )
    return future


def hold(state: redis.Redis, key: str) -> Callable[[], None]:
    """Claim ``key``'s in-flight marker as if another api had sent its render: askers
    wait. The returned function lets go; the next re-check of a waiter then claims the
    marker and sends the render itself."""
    assert state.set(inflight_key(key), "test-holder", nx=True, px=120_000)
    return lambda: state.delete(inflight_key(key))


def test_serves_tiles_over_keep_alive(
    server_api: Api, sources: dict[str, str], state: redis.Redis
) -> None:
    source = sources["pyramid"]
    conn = http.client.HTTPConnection(HOST, server_api.port, timeout=90)
    try:
        conn.request("GET", tile_path(source, 0, 0, 0))
        first = conn.getresponse()
        body = first.read()
        assert first.status == 200 and body[:2] == b"\xff\xd8"
        assert first.getheader("ETag") and first.getheader("Cache-Control")
        sock = conn.sock
        conn.request("GET", tile_path(source, 1, 0, 0))
        second = conn.getresponse()
        assert second.status == 200 and second.read()[:2] == b"\xff\xd8"
        assert conn.sock is sock, "the second request needed a new connection"
        conn.request("GET", "/item/nope/tiles/zxy/0/0/0")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.getheader("Content-Type") == "application/json"
        missing.read()
    finally:
        conn.close()


def test_more_keep_alive_connections_than_threads(
    server_api: Api, api: ApiServer, sources: dict[str, str]
) -> None:
    """Idle keep-alive connections (a browser keeps several per host) hold no app thread:
    a server that bounded open connections by its threads would leave some unanswered."""
    source = sources["pyramid"]
    path = tile_path(source, 0, 0, 0)
    assert api.get(path).status_code == 200  # cached
    conns = [http.client.HTTPConnection(HOST, server_api.port, timeout=60) for _ in range(12)]
    assert len(conns) > WORKERS * THREADS
    try:
        for _ in range(2):  # the second round reuses every open connection
            for conn in conns:
                conn.request("GET", path)
                response = conn.getresponse()
                assert response.status == 200 and response.read()[:2] == b"\xff\xd8"
    finally:
        for conn in conns:
            conn.close()


def test_hits_are_answered_while_requests_wait(
    server_api: Api, api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    source = sources["pyramid"]
    held = [cold_tile(state, api, source, 4, x) for x in (1, 2, 3)]
    hit_path = tile_path(source, 0, 0, 0)
    assert api.get(hit_path).status_code == 200  # now cached
    releases = [hold(state, key) for _, key in held]
    baseline = subscribers(state)
    with ThreadPoolExecutor(len(held)) as pool:
        try:
            waiting = [
                start_waiting(pool, server_api, path, state, baseline if i == 0 else None)
                for i, (path, _) in enumerate(held)
            ]
            time.sleep(0.5)  # let the other waiters reach their wait too
            # THREADS - 1 app threads are waiting for renders: a hit still gets through.
            status, _, body = server_api.get(hit_path)
            assert status == 200 and body[:2] == b"\xff\xd8"
            assert not any(f.done() for f in waiting), "a waiting request ended too early"
        finally:
            for release in releases:
                release()
        results = [f.result(timeout=120) for f in waiting]
    assert [r[0] for r in results] == [200] * len(held)


def test_more_requests_wait_than_threads_and_hits_still_answer(
    bounded_api: Api, api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    """MAX_WAITING (> THREADS) requests wait for renders at once, each on an app thread
    of its own: a hit still answers at once, one more waiting request is refused with a
    503 and Retry-After, and every waiting request gets its tile in the end."""
    source = sources["pyramid"]
    z = int(api.get(f"/item/{source}/tiles").json()["levels"]) - 1
    held = [cold_tile(state, api, source, z, x) for x in range(1, MAX_WAITING + 2)]
    hit_path = tile_path(source, 0, 0, 0)
    assert api.get(hit_path).status_code == 200  # now cached
    releases = [hold(state, key) for _, key in held]
    baseline = subscribers(state)
    waiters, extra = held[:MAX_WAITING], held[MAX_WAITING]
    with ThreadPoolExecutor(len(waiters)) as pool:
        try:
            waiting = [
                start_waiting(pool, bounded_api, path, state, baseline if i == 0 else None)
                for i, (path, _) in enumerate(waiters)
            ]
            time.sleep(1.0)  # let the other waiters reach their wait too
            assert len(waiting) > WORKERS * THREADS
            started = time.monotonic()
            status, _, body = bounded_api.get(hit_path, timeout=10)
            assert status == 200 and body[:2] == b"\xff\xd8"
            assert time.monotonic() - started < 5, "the hit queued behind the waits"
            status, headers, body = bounded_api.get(extra[0], timeout=10)
            assert status == 503 and int(headers["retry-after"]) > 0
            assert json.loads(body)["error"] == "too_many_waiting"
            assert not any(f.done() for f in waiting), "a waiting request ended too early"
        finally:
            for release in releases:
                release()
        results = [f.result(timeout=120) for f in waiting]
    assert [r[0] for r in results] == [200] * len(waiters)


def test_sigterm_lets_a_waiting_request_finish(
    server_api: Api, api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    source = sources["pyramid"]
    path, key = cold_tile(state, api, source, 4, 4)
    release = hold(state, key)
    baseline = subscribers(state)
    with ThreadPoolExecutor(1) as pool:
        try:
            waiting = start_waiting(pool, server_api, path, state, baseline)
            children = procs.descendants(server_api.child.proc.pid)
            server_api.child.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the stop has begun; the request still waits for its render
            assert not waiting.done()
        finally:
            release()
        status, _, body = waiting.result(timeout=120)
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert server_api.child.proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(procs.alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if procs.alive(pid)], "server processes outlived it"


def test_sigterm_stops_an_idle_server(server_api: Api) -> None:
    children = procs.descendants(server_api.child.proc.pid)
    assert children, "the server runs its app in worker processes"
    server_api.child.proc.send_signal(signal.SIGTERM)
    assert server_api.child.proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(procs.alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if procs.alive(pid)]
