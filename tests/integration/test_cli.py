"""The command line with real processes: ``tilecast add`` and the ``tilecast up`` smoke test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO
from tilecast import procs
from tilecast.common.localpaths import source_id_for_path
from tilecast.redis_server import free_port

pytestmark = pytest.mark.integration


def test_add_prints_the_id(
    tilecast_env: dict[str, str], images: dict[str, Path], outside_file: Path
) -> None:
    run = [sys.executable, "-m", "tilecast", "add"]
    done = subprocess.run(
        [*run, str(images["lzw"])], env=tilecast_env, cwd=REPO, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == source_id_for_path(os.path.realpath(images["lzw"]))
    refused = subprocess.run(
        [*run, str(outside_file)], env=tilecast_env, cwd=REPO, capture_output=True, timeout=60
    )
    assert refused.returncode == 2
    assert b"outside" in refused.stderr


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError("tilecast up did not get ready:\n" + "\n".join(lines))


def test_up_smoke(tmp_path: Path, images: dict[str, Path]) -> None:
    image = tmp_path / "images" / "small.tiff"
    image.parent.mkdir()
    image.write_bytes(images["deflate"].read_bytes())
    port = free_port()
    env = procs.child_environment(
        {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}, keep_tilecast=False
    )
    argv = [
        *[sys.executable, "-m", "tilecast", "up", str(image), "--port", str(port)],
        *["--data-dir", str(tmp_path / "data"), "--concurrency", "1", "--api-workers", "1"],
    ]
    proc = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = read_until(proc, "tilecast is up", timeout=90)
        tile_url = next(line.split()[-1] for line in lines if line.strip().startswith("tile "))
        response = requests.get(tile_url, timeout=60)
        assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
        viewer_url = next(line.split()[-1] for line in lines if line.strip().startswith("viewer "))
        index_url = next(line.split()[1] for line in lines if line.startswith("index "))
        for page in (viewer_url, index_url):
            assert requests.get(page, headers={"Accept": "text/html"}, timeout=30).ok, page
        children = procs.descendants(proc.pid)
        assert len(children) >= 3  # redis-server, the worker, the api (and their pools)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(procs.alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if procs.alive(pid)], "children outlived tilecast up"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
