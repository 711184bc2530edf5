"""A stand-in for the few Girder REST endpoints workers/girder/ calls, served by a real
threaded HTTP server on a free loopback port (the integration tests use a real Girder).

Endpoints under ``/api/v1``: ``POST api_key/token``, ``GET item/{id}``,
``GET item/{id}/files``, ``GET file/{id}``, ``GET file/{id}/download`` (with or without
Range support) and tilecast's plugin endpoint ``GET tilecast/file/{id}/path``. Every
request is recorded, and the bytes each download sent are counted.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "the-service-account-key"
SECRET = "the-plugin-secret"
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class StandinFile:
    id: str
    item_id: str
    name: str
    path: Path  # where the stand-in reads the bytes from
    created: str = field(default_factory=lambda: f"{time.time():.6f}")
    girder_path: str | None = None  # what the tilecast plugin reports, if anything

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "_modelType": "file",
            "itemId": self.item_id,
            "name": self.name,
            "size": self.size,
            "created": self.created,
            "assetstoreId": "a" * 24,
        }


@dataclass
class Download:
    file_id: str
    range: str | None
    status: int
    sent: int


class GirderStandin:
    def __init__(self, *, ranges: bool = True) -> None:
        self.ranges = ranges
        self.items: dict[str, dict[str, Any]] = {}
        self.files: dict[str, StandinFile] = {}
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.requests: list[str] = []
        self.downloads: list[Download] = []
        self.delay = 0.0  # seconds every answer waits (a Girder that hangs)
        self.fail_status: int | None = None  # answer every request with this status
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- content ------------------------------------------------------------------------------
    def add_item(self, name: str, *files: tuple[str, Path], large_image: int | None = None) -> str:
        """A new item holding ``files`` (name, path); ``large_image`` is the index of the
        file to record as its ``largeImage.fileId``."""
        item_id = secrets.token_hex(12)
        item: dict[str, Any] = {"_id": item_id, "_modelType": "item", "name": name}
        ids = []
        for file_name, path in files:
            file = StandinFile(secrets.token_hex(12), item_id, file_name, path)
            self.files[file.id] = file
            ids.append(file.id)
        if large_image is not None:
            item["largeImage"] = {"fileId": ids[large_image]}
        item["files"] = ids
        self.items[item_id] = item
        return item_id

    def item_files(self, item_id: str) -> list[StandinFile]:
        return [self.files[i] for i in self.items[item_id]["files"]]

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def bytes_sent(self, file_id: str | None = None) -> int:
        with self.lock:
            return sum(d.sent for d in self.downloads if file_id in (None, d.file_id))

    def full_downloads(self) -> int:
        with self.lock:
            return sum(1 for d in self.downloads if d.range is None and d.status == 200)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (a probe that saw a 200, a closed pool) are not errors.
        pass


def _handler(girder: GirderStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path.removeprefix("/api/v1/")
            with girder.lock:
                girder.requests.append(f"{method} {path}")
            if girder.delay:
                time.sleep(girder.delay)
            if girder.fail_status:
                return self._json({"message": "broken"}, girder.fail_status)
            if method == "POST" and path == "api_key/token":
                return self._token(query)
            if self.headers.get("Girder-Token") not in girder.tokens:
                return self._json({"message": "Invalid token.", "type": "rest"}, 401)
            parts = path.split("/")
            if parts[:1] == ["item"] and len(parts) in (2, 3):
                return self._item(parts)
            if parts[:1] == ["file"] and len(parts) in (2, 3):
                return self._file(parts)
            if parts[:2] == ["tilecast", "file"] and parts[3:] == ["path"]:
                return self._plugin_path(parts[2])
            self._json({"message": f"No matching route for {path}"}, 404)

        def _token(self, query: dict[str, str]) -> None:
            if query.get("key") != API_KEY:
                return self._json({"message": "Invalid API key.", "type": "rest"}, 400)
            token = secrets.token_hex(16)
            with girder.lock:
                girder.tokens.add(token)
                girder.token_requests += 1
            self._json({"authToken": {"token": token}, "user": {"login": "service"}})

        def _item(self, parts: list[str]) -> None:
            item = girder.items.get(parts[1])
            if item is None:
                return self._json(
                    {"message": f"Invalid item id ({parts[1]}).", "type": "rest"}, 400
                )
            if len(parts) == 2:
                return self._json({k: v for k, v in item.items() if k != "files"})
            if parts[2] == "files":
                return self._json([f.document() for f in girder.item_files(parts[1])])
            self._json({"message": "No matching route"}, 404)

        def _file(self, parts: list[str]) -> None:
            file = girder.files.get(parts[1])
            if file is None:
                return self._json(
                    {"message": f"Invalid file id ({parts[1]}).", "type": "rest"}, 400
                )
            if len(parts) == 2:
                return self._json(file.document())
            if parts[2] == "download":
                return self._download(file)
            self._json({"message": "No matching route"}, 404)

        def _plugin_path(self, file_id: str) -> None:
            if self.headers.get("Tilecast-Secret") != SECRET:
                return self._json({"message": "wrong secret"}, 401)
            file = girder.files.get(file_id)
            if file is None or file.girder_path is None:
                return self._json({"message": "not in a filesystem assetstore"}, 404)
            self._json({"path": file.girder_path, "size": file.size})

        def _download(self, file: StandinFile) -> None:
            size = file.size
            asked = self.headers.get("Range")
            match = RANGE.match(asked or "") if girder.ranges else None
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else size - 1, size - 1)
                status, headers = 206, {"Content-Range": f"bytes {start}-{end}/{size}"}
            else:
                start, end, status, headers = 0, size - 1, 200, {}
            with file.path.open("rb") as handle:
                handle.seek(start)
                body = handle.read(end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if girder.ranges else "none")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            # Recorded before the body goes out: the client may act on it at once.
            record = Download(file.id, asked, status, len(body))
            with girder.lock:
                girder.downloads.append(record)
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading (a probe)
                with girder.lock:
                    record.sent = 0  # unknown, and not read by the client

        def _json(self, value: Any, status: int = 200) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def running_standin(*, ranges: bool = True) -> Iterator[GirderStandin]:
    girder = GirderStandin(ranges=ranges)
    try:
        yield girder
    finally:
        girder.close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


__all__ = ["API_KEY", "SECRET", "GirderStandin", "closed_port", "running_standin"]
