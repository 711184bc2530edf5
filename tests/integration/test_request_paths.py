"""Encoded separators and empty path segments get the same answer under every server
``tilecast api --server NAME`` runs (real processes, raw request targets): an encoded
slash is a slash (granian decodes it and passes no raw target: the one rule both can
keep), and an empty, ``.`` or ``..`` segment is a 400 naming ``path``, never a 308 to
a merged path or a page that differs by server."""

from __future__ import annotations

import http.client
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import HOST, PROCESS_START_TIMEOUT, start_child, wait_until
from tests.unit.fakes import METADATA
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.redis_server import free_port
from tilecast.servers import SERVERS

pytestmark = pytest.mark.integration

ID = "{id}"
# (path as sent, status, parameter of a 400 or None)
CASES = [
    (f"/item/{ID}/tiles", 200, None),
    (f"/item/{ID}%2Ftiles", 200, None),
    (f"/item/{ID}%2ftiles", 200, None),
    (f"/item%2F{ID}/tiles", 200, None),
    (f"/iiif/{ID}%2Finfo.json", 200, None),
    (f"//item/{ID}/tiles", 400, "path"),
    (f"/item/{ID}//tiles", 400, "path"),
    (f"/item//{ID}/tiles", 400, "path"),
    (f"/item/{ID}/tiles/zxy/0//0/0", 400, "path"),
    (f"/item/{ID}%2F%2Ftiles", 400, "path"),
    (f"/item/{ID}/tiles/%2E%2E/tiles", 400, "path"),
    (f"/item/{ID}/./tiles", 400, "path"),
    (f"/item/{ID}%2F..%2F/tiles", 400, "path"),
    ("/%2Fhealthz", 400, "path"),
    (f"/item/{ID}/tiles/", 404, None),
    (f"/item/{ID}/tiles%2F", 404, None),
    (f"/item/{ID}/tiles/images/x%2Fy", 404, None),
]


@pytest.fixture(scope="module")
def item(state: redis.Redis) -> str:
    source = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source


@pytest.fixture(scope="module", params=SERVERS)
def server_port(
    request: pytest.FixtureRequest, tilecast_env: dict[str, str], logs_dir: Path
) -> Iterator[int]:
    server = str(request.param)
    port = free_port(HOST)
    argv = [
        *[sys.executable, "-m", "tilecast", "api", "--bind", f"{HOST}:{port}"],
        *["--workers", "1", "--threads", "2", "--server", server],
    ]
    child = start_child(f"api-paths-{server}", argv, tilecast_env, logs_dir)
    try:
        wait_until(
            f"{server} /healthz", lambda: raw_get(port, "/healthz")[0] == 200, child,
            PROCESS_START_TIMEOUT,
        )  # fmt: skip
        yield port
    finally:
        child.stop()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET with the request target exactly as given (http.client sends it unchanged)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("target", "status", "parameter"), CASES)
def test_paths_are_answered_alike(
    server_port: int, item: str, target: str, status: int, parameter: str | None
) -> None:
    got, body = raw_get(server_port, target.replace(ID, item))
    assert got == status, (target, body[:200])
    answer = json.loads(body)  # every answer is JSON, a 400 or 404 too
    if parameter is not None:
        assert answer["parameter"] == parameter
