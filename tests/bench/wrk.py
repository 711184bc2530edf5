"""The load generator of the hit benchmark: Debian's ``wrk`` with a list of tile paths.

wrk is C with an event loop, so it takes a small share of the two cores that the servers
under test need; a Python generator would compete with them for the CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import HOST, BenchError

SCRIPT = Path(__file__).with_name("wrk_paths.lua")


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package when it is missing and we may."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            apt = None
        sudo = ["sudo", "-n"]
    if apt:
        print("wrk not found: installing Debian's wrk (apt-get install -y wrk)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, apt, "update", "-q"], check=False, env=env)
        subprocess.run([*sudo, apt, "install", "-y", "-q", "wrk"], check=False, env=env)
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(
        "the hit benchmark needs wrk (Debian/Ubuntu: `apt-get install -y wrk`); "
        "install it, or run the other benchmarks with --only latency,render"
    )


def wrk_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(
    binary: str,
    port: int,
    paths_file: Path,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
) -> WrkResult:
    argv = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        f"http://{HOST}:{port}",
        "--",
        str(paths_file),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout[-800:]} {out.stderr[-800:]}")
    body = json.loads(lines[-1])
    return WrkResult(
        requests=int(body["requests"]),
        seconds=int(body["duration_us"]) / 1e6,
        bytes=int(body["bytes"]),
        errors={k: int(v) for k, v in body["errors"].items()},
        latency_us={k: float(v) for k, v in body["latency_us"].items()},
    )
