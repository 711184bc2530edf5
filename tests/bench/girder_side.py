"""The Girder side of the hit benchmark: Girder 3.2 with large_image's Girder plugin
(``girder-large-image``) serving the same tiles from its own tile cache.

Nothing here is imported by tilecast, and no downloaded code is kept in the repository:
Girder 3.2.18 and girder-large-image (which pin ``girder<5`` and their own large-image)
are pip-installed once into a virtualenv of their own under the benchmark's cache folder
(``~/.cache/tilecast-bench/girder-venv``), reused by later runs. MongoDB is played by
``secantusdb`` (a MongoDB wire-protocol server from PyPI, a test-time tool only; see
``shared/notes/girder.md``).

What runs, as a production site runs it: ``girder serve --mode production`` (one
CherryPy process, its default pool of 100 threads) against the database, a filesystem
assetstore, an admin user, the image uploaded into the admin's Public folder (so that
anonymous tile requests are allowed, as tilecast's ``open`` mode allows them), made a
large image by the plugin on upload. large_image's tile cache is its ``python`` backend:
an in-process LRU of encoded tiles, what ``cache_backend`` resolves to when no memcached
or Redis is configured, and the fastest backend for a single Girder process (a hit is a
dict lookup, no network hop); its size is raised (``cache_python_memory_portion``) so
that every benchmarked tile stays in it. Access logging is off, as in tilecast.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.bench import harness
from tests.bench.harness import HOST, BenchError, Processes

# What the Girder virtualenv holds; a change here rebuilds it on the next run.
REQUIREMENTS = (
    "girder==3.2.18",
    "girder-large-image==1.35.6",
    "large-image-source-tiff==1.35.6",
    "secantusdb==0.7.0b3",
)
VENV_NAME = "girder-venv"
API = "/api/v1"
ADMIN = {"login": "benchadmin", "password": "bench-password-1", "email": "bench@example.com"}
CHUNK_BYTES = 32 * 1024 * 1024
# Enough of the memory for every benchmarked tile to stay in large_image's tile cache.
CACHE_MEMORY_PORTION = 4


def ensure_venv(cache_dir: Path) -> Path:
    """The Girder virtualenv under ``cache_dir``, created and pip-installed on first use."""
    venv = cache_dir / VENV_NAME
    marker = venv / ".tilecast-bench-requirements"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if marker.is_file() and marker.read_text() == wanted and (venv / "bin" / "girder").exists():
        return venv
    print(f"  girder: creating {venv} (pip install {' '.join(REQUIREMENTS)})", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The base interpreter, not tilecast's virtualenv: nothing of Girder leaks into it.
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--clear", str(venv)])
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    _run([*pip, *REQUIREMENTS])
    marker.write_text(wanted)
    return venv


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def venv_version(venv: Path, package: str) -> str:
    code = f"from importlib.metadata import version; print(version({package!r}))"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


@dataclass
class Girder:
    child: harness.Child
    port: int
    token: str
    venv: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{API}{path}"

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        headers = {**(headers or {}), **({"Girder-Token": self.token} if self.token else {})}
        response = requests.request(method, self.url(path), headers=headers, timeout=120, **kwargs)
        if response.status_code >= 400:
            raise BenchError(
                f"girder {method} {path} -> {response.status_code}: {response.text[:500]}"
            )
        return response.json()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def start(procs: Processes, cache_dir: Path) -> Girder:
    """secantusdb and Girder on free ports, with an admin user and an assetstore."""
    venv = ensure_venv(cache_dir)
    scratch = procs.scratch / "girder"
    (scratch / "assets").mkdir(parents=True, exist_ok=True)
    db_port = harness.free_port()
    db = procs.start(
        "secantusdb",
        [
            str(venv / "bin" / "secantusd-py"),
            *["--host", HOST, "--port", str(db_port)],
            *["--storage-path", str(scratch / "db"), "--log-level", "WARNING"],
        ],
    )
    harness.wait_for(f"secantusdb on port {db_port}", lambda: _port_open(db_port), 60, [db])
    config = scratch / "girder.cfg"
    config.write_text(
        "\n".join(
            [
                "[global]",
                "server.thread_pool = 100",
                "[logging]",
                f'log_root = "{scratch / "logs"}"',
                "log_access = []",
                'log_level = "WARNING"',
                "[large_image]",
                'cache_backend = "python"',
                f"cache_python_memory_portion = {CACHE_MEMORY_PORTION}",
                "",
            ]
        )
    )
    port = harness.free_port()
    env = {
        "GIRDER_CONFIG": str(config),
        "GIRDER_MONGO_URI": f"mongodb://{HOST}:{db_port}/girder",
        "GIRDER_WORKER_TASK_ALWAYS_EAGER": "true",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    argv = [str(venv / "bin" / "girder"), "serve", "--mode", "production"]
    child = procs.start("girder", [*argv, "-H", HOST, "-p", str(port)], env, cwd=scratch)
    girder = Girder(child, port, "", venv)
    harness.wait_for(
        f"girder on port {port}",
        lambda: requests.get(girder.url("/system/version"), timeout=2).status_code == 200,
        120,
        [child],
    )
    user = requests.post(
        girder.url("/user"),
        params={**ADMIN, "firstName": "Bench", "lastName": "Admin"},
        timeout=60,
    ).json()
    if "authToken" not in user:
        raise BenchError(f"girder: creating the admin user failed: {user}")
    girder.token = user["authToken"]["token"]
    girder.call(
        "POST",
        "/assetstore",
        params={"name": "bench", "type": 0, "root": str(scratch / "assets")},
    )
    return girder


def upload_large_image(girder: Girder, image: Path) -> str:
    """Upload ``image`` into the admin's Public folder; the item id once large_image has
    made it a large image (on upload, else asked explicitly)."""
    me = girder.call("GET", "/user/me")
    folders = girder.call(
        "GET", "/folder", params={"parentType": "user", "parentId": me["_id"], "name": "Public"}
    )
    if not folders:
        raise BenchError("girder: the admin user has no Public folder")
    size = image.stat().st_size
    upload = girder.call(
        "POST",
        "/file",
        params={
            "parentType": "folder",
            "parentId": folders[0]["_id"],
            "name": image.name,
            "size": size,
            "mimeType": "image/tiff",
        },
    )
    offset = 0
    doc: dict[str, Any] = upload
    with image.open("rb") as fh:
        while offset < size:
            chunk = fh.read(CHUNK_BYTES)
            doc = girder.call(
                "POST",
                "/file/chunk",
                params={"uploadId": upload["_id"], "offset": offset},
                data=chunk,
                headers={"Content-Type": "application/octet-stream"},
            )
            offset += len(chunk)
    item_id = str(doc["itemId"])
    file_id = str(doc["_id"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "largeImage" in girder.call("GET", f"/item/{item_id}"):
            return item_id
        time.sleep(0.2)
    # Not made automatically (auto-set off, or the event still queued): ask for it.
    girder.call("POST", f"/item/{item_id}/tiles", params={"fileId": file_id})
    harness.wait_for(
        "girder large image",
        lambda: "largeImage" in girder.call("GET", f"/item/{item_id}"),
        60,
        [girder.child],
    )
    return item_id


def tile_path(item_id: str, z: int, x: int, y: int) -> str:
    return f"{API}/item/{item_id}/tiles/zxy/{z}/{x}/{y}"
