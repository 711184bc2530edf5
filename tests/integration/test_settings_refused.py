"""Settings that would silently serve a server other than the one asked for stop it at
start, as real processes: a misspelt ``TILECAST_*`` name, an invalid access mode, signing
keys with the access mode left to its open default. Each is exit 2 and one line that
names the fix; nothing listens, nothing is started."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tilecast import procs
from tilecast.redis_server import free_port

pytestmark = pytest.mark.integration

KEYS = "k1:0123456789abcdef-secret"


def tilecast(argv: list[str], settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = procs.child_environment({"PYTHONPATH": str(REPO), **settings}, keep_tilecast=False)
    return subprocess.run(
        [sys.executable, "-m", "tilecast", *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("settings", "fix"),
    [
        ({"TILECAST_ACCES": "signed"}, "did you mean TILECAST_ACCESS_MODE?"),
        ({"TILECAST_ACCESS_MODE": "singed"}, "one of open, girder, signed"),
        ({"TILECAST_SIGNING_KEYS": KEYS}, "set TILECAST_ACCESS_MODE=signed"),
    ],
    ids=["typo", "invalid-mode", "keys-in-open-mode"],
)
def test_api_refuses_to_start(settings: dict[str, str], fix: str) -> None:
    port = free_port()
    done = tilecast(["api", "--bind", f"127.0.0.1:{port}"], settings)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilecast api: "), done.stderr
    assert fix in lines[0]
    assert not listening(port)


def test_up_and_worker_refuse_a_typo_before_starting_anything(tmp_path: Path) -> None:
    for argv in (["up", "--data-dir", str(tmp_path / "data")], ["worker"]):
        done = tilecast(argv, {"TILECAST_SOURCE_ROOT": str(tmp_path)})
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"tilecast {argv[0]}: TILECAST_SOURCE_ROOT is not a tilecast setting: "
            "did you mean TILECAST_SOURCE_ROOTS?"
        ]
    assert not (tmp_path / "data").exists()  # no Redis, no sample image
