"""A real DICOMweb server for the tests: Orthanc with its DICOMweb plugin (Debian's
``orthanc`` and ``orthanc-dicomweb``, installed by scripts/test), started on a free
loopback port with a JSON configuration in a temporary folder, HTTP basic
authentication on; and :class:`CountingProxy`, a reverse proxy in front of it that
records every request (status, bytes sent), may add a latency to every answer (benchmark
11), and misbehaves on demand: throttling (429 or 503 with Retry-After), or demanding a
bearer token that it swaps for Orthanc's own credentials (Orthanc knows no bearer
tokens).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.remoteservers import LoopbackServer, Request, RequestLog

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN_PACKAGE = "orthanc-dicomweb"
USER, PASSWORD = "tilecast", "orthanc-test-password"
DICOMWEB_ROOT = "/dicom-web"


def dicomweb_plugin() -> str:
    """The DICOMweb plugin's library, where the Debian package put it."""
    listing = subprocess.run(
        ["dpkg", "-L", PLUGIN_PACKAGE], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        if line.endswith(".so") and "DicomWeb" in line:
            return line
    raise FileNotFoundError(f"{PLUGIN_PACKAGE} is not installed: scripts/test installs it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OrthancServer:
    """Orthanc on a free port, storing in ``folder``; stopped by :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        if shutil.which(ORTHANC) is None:
            raise FileNotFoundError(f"{ORTHANC} is missing: scripts/test installs orthanc")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "Name": "tilecast-tests",
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT + "/"},
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "HttpCompressionEnabled": False,
        }
        path = folder / "orthanc.json"
        path.write_text(json.dumps(config))
        self._log = (folder / "orthanc.log").open("wb")
        self.process = subprocess.Popen(
            [ORTHANC, str(path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("Orthanc did not start")

    def _request(self, path: str, data: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url + path, data=data)
        request.add_header("Authorization", basic_auth(USER, PASSWORD))
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def get(self, path: str) -> Any:
        return self._request(path)

    def upload(self, files: list[Path]) -> tuple[str, str]:
        """Store the instances (``POST /instances``); the (study, series) UIDs of the
        last one."""
        tags: dict[str, Any] = {}
        for file in files:
            stored = self._request("/instances", file.read_bytes())
            tags = self.get(f"/instances/{stored['ID']}/simplified-tags")
        return str(tags["StudyInstanceUID"]), str(tags["SeriesInstanceUID"])

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class CountingProxy(LoopbackServer):
    """A reverse proxy to ``target`` on a free port, recording each request."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.log = RequestLog()
        self.throttle: tuple[int, int] | None = None  # (status, Retry-After) for every GET
        self.token: str | None = None  # a bearer token demanded, swapped for basic auth
        self.truncate = False  # send half of each answer's body, then close
        self.latency = 0.0  # seconds every answer waits (a network's round trip)
        self._serve(_proxy_handler(self))


def _proxy_handler(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if proxy.latency:
                time.sleep(proxy.latency)
            if proxy.throttle is not None:
                status, wait = proxy.throttle
                self._answer(status, {"Retry-After": str(wait)}, b"slow down")
                return
            authorization = self.headers.get("Authorization")
            if proxy.token is not None:
                if authorization != f"Bearer {proxy.token}":
                    self._answer(401, {"WWW-Authenticate": 'Bearer realm="pacs"'}, b"")
                    return
                authorization = basic_auth(USER, PASSWORD)
            request = urllib.request.Request(proxy.target + self.path)
            for name in ("Accept",):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            if authorization:
                request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, headers, body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as error:
                status, headers, body = error.code, error.headers, error.read()
            kept = {
                name: headers[name]
                for name in ("Content-Type", "WWW-Authenticate")
                if headers.get(name) is not None
            }
            self._answer(status, kept, body)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            sent = len(body) // 2 if proxy.truncate else len(body)
            # Recorded before the client can have its answer: a test counting requests
            # right after a read sees every one.
            proxy.log.add(Request(self.command, self.path, None, status, sent))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if proxy.truncate:
                self.close_connection = True
            self.wfile.write(body[:sent])

    return Handler
