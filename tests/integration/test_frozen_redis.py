"""A frozen Redis (the process stopped with SIGSTOP: connections accepted by the kernel,
never answered) is a fast 503 with Retry-After, not a long wait: tile hits and misses
answer within TILECAST_REDIS_TIMEOUT, and /readyz within TILECAST_READYZ_TIMEOUT, each
plus a small margin. The Redis is this test's own, never the suite's shared one."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ApiServer, launch_api
from tests.unit.fakes import METADATA
from tilecast.common.redisconn import connect
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.tiles import TileRequest
from tilecast.redis_server import RedisServer

pytestmark = pytest.mark.integration

REDIS_TIMEOUT = 1.0
# Shorter than the socket timeout: /readyz must answer by its own deadline, not the socket's.
READYZ_TIMEOUT = 0.5
# Scheduling on a loaded two-core machine, the HTTP round trip, the 503's own work.
MARGIN = 1.5


@pytest.fixture
def frozen_setup(
    tmp_path: Path, tilecast_env: dict[str, str], logs_dir: Path
) -> Iterator[tuple[RedisServer, ApiServer, str]]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    env = {
        **tilecast_env,
        "TILECAST_CACHE_URL": server.url,
        "TILECAST_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
        "TILECAST_REDIS_CONNECT_TIMEOUT": str(REDIS_TIMEOUT),
        "TILECAST_READYZ_TIMEOUT": str(READYZ_TIMEOUT),
        "TILECAST_RENDER_TIMEOUT": "30",
    }
    client = connect(server.url)
    source = uuid.uuid4().hex[:24]
    registry = SourceRegistry(client)
    registry.add(SourceRecord(source, "/x/a.tiff", "a.tiff", dict(METADATA)))
    generation = registry.generation(source) or 0
    client.set(TileRequest(source, 0, 0, 0).key(generation), b"\xff\xd8cached tile\xff\xd9")
    api = launch_api(env, logs_dir, "api-frozen-redis")
    try:
        yield server, api, source
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # never leave it stopped
        api.http.close()
        api.child.stop()
        client.close()
        server.stop()


def timed(api: ApiServer, path: str) -> tuple[float, int, Any, dict[str, Any]]:
    started = time.monotonic()
    response = api.get(path, timeout=30)
    elapsed = time.monotonic() - started
    body = response.json() if "json" in response.headers.get("Content-Type", "") else {}
    return elapsed, response.status_code, response.headers, body


def test_a_frozen_redis_is_a_fast_503(frozen_setup: tuple[RedisServer, ApiServer, str]) -> None:
    server, api, source = frozen_setup
    hit = api.get(f"/item/{source}/tiles/zxy/0/0/0")
    assert hit.status_code == 200 and hit.headers["X-Tilecast-Cache"] == "hit"

    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for path in (
            f"/item/{source}/tiles/zxy/0/0/0",  # was a hit
            f"/item/{source}/tiles/zxy/2/1/1",  # a miss
            f"/item/{source}/tiles/zxy/0/0/0",  # on a connection the first one dropped
        ):
            elapsed, status, headers, body = timed(api, path)
            assert status == 503, (path, status, body)
            assert int(headers["Retry-After"]) >= 1
            assert body["error"] == "service_unavailable"
            assert elapsed < REDIS_TIMEOUT + MARGIN, (path, elapsed)
            print(f"frozen Redis: {path} -> {status} in {elapsed:.2f} s")

        elapsed, status, headers, body = timed(api, "/readyz")
        assert status == 503 and "Retry-After" in headers
        assert elapsed < READYZ_TIMEOUT + MARGIN, elapsed
        print(f"frozen Redis: /readyz -> {status} in {elapsed:.2f} s")
        assert {"cache", "state"} <= set(body["failed"])
        for name in ("cache", "state"):
            assert body["checks"][name]["reason"].startswith("timed out"), body
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)

    # Thawed, the same process answers again: nothing was left broken.
    deadline = time.monotonic() + 10
    while (status := api.get(f"/item/{source}/tiles/zxy/0/0/0").status_code) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
