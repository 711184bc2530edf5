"""Observability against the real stack: a render's worker log line carries the request
id the api was sent, /metrics shows the request and the render's latency, /readyz names
its checks, /openapi.json is served."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from openapi_spec_validator import validate

from tests.conftest import ApiServer, Child
from tests.unit.test_common_metrics import parse

LOG_WAIT_SECONDS = 30.0


def _cold_tile(source: str) -> tuple[str, dict[str, str]]:
    """A tile nobody asked before: a style of its own makes its own cache key."""
    style = json.dumps({"min": 0, "max": 200 + uuid.uuid4().int % 10_000 / 100})
    return f"/item/{source}/tiles/zxy/0/0/0", {"style": style}


def _worker_lines_with(request_id: str, logs_dir: Path) -> list[str]:
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        found = [
            line
            for log in sorted(logs_dir.glob("worker*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if request_id in line
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_render_is_logged_by_the_worker_with_the_request_id(
    api: ApiServer, worker: Child, sources: dict[str, str], logs_dir: Path
) -> None:
    request_id = f"it-{uuid.uuid4().hex}"
    path, query = _cold_tile(sources["pyramid"])
    response = api.get(path, params=query, headers={"X-Request-Id": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["X-Tilecast-Cache"] == "miss"
    assert response.headers["X-Request-Id"] == request_id
    lines = _worker_lines_with(request_id, logs_dir)
    assert any("render_tile" in line for line in lines), lines or worker.tail()


def test_metrics_show_requests_and_render_latency(api: ApiServer, sources: dict[str, str]) -> None:
    path, query = _cold_tile(sources["pyramid"])
    assert api.get(path, params=query).status_code == 200
    # Workers flush with each task; api processes within a second (common/counters.py).
    deadline = time.monotonic() + 10
    while True:
        values = parse(api.get("/metrics").text)
        route = 'method="GET",route="/item/{item_id}/tiles/zxy/{z}/{x}/{y}",status="2xx"'
        requests = values.get(f"tilecast_http_requests_total{{{route}}}", 0)
        renders = values.get('tilecast_render_duration_seconds_count{kind="tile"}', 0)
        if (requests and renders) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert requests >= 1 and renders >= 1
    assert values['tilecast_render_duration_seconds_bucket{kind="tile",le="+Inf"}'] >= renders
    assert 'tilecast_jobs{state="running"}' in values


def test_readiness_names_its_checks(api: ApiServer) -> None:
    body = api.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["workers"]["live"]["interactive"] >= 1


def test_openapi_document_is_served_and_valid(api: ApiServer) -> None:
    spec = api.get("/openapi.json").json()
    validate(spec)
    assert "/item/{item_id}/tiles/zxy/{z}/{x}/{y}" in spec["paths"]


def test_json_log_format_makes_every_api_line_json(
    start_api: Callable[[Mapping[str, str]], ApiServer], worker: Child
) -> None:
    server = start_api({"TILECAST_LOG_FORMAT": "json"})
    request_id = f"json-{uuid.uuid4().hex}"
    assert server.get("/item/nothing/tiles", headers={"X-Request-Id": request_id}).ok is False
    # The log file may hold earlier tests' api processes: this one's lines start at its
    # granian's first line. Both granian workers have started once both say so (a stop
    # right before that would wait for its kill timeout: granian misses it).
    first = f"Starting granian (main PID: {server.child.proc.pid})"
    deadline = time.monotonic() + 30
    while True:
        lines = server.child.log.read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if first in line]
        lines = lines[starts[-1] :] if starts else []
        if sum('"Started worker-' in line for line in lines) >= 4:
            break
        assert time.monotonic() < deadline, server.child.tail()
        time.sleep(0.1)
    for line in filter(str.strip, lines):
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record), line
