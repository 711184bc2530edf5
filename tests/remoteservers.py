"""Real servers for URL sources, started by the tests on free loopback ports.

- :class:`RangeServer`: a threaded HTTP server over a folder that answers ``Range`` with
  206 (Python's ``http.server`` ignores Range), ``HEAD`` with ``Content-Length``,
  ``ETag`` and ``Last-Modified``, and ``If-Match`` with 412. Switches make it misbehave
  the ways real servers do: ignore Range, throttle (503 or 429 with ``Retry-After``),
  cut answers short, wait before answering (a per-request latency).
- :class:`S3Server`: moto's S3 in server mode (``ThreadedMotoServer``'s app) behind a
  WSGI wrapper that counts requests and body bytes.

Both record every request (method, range, status, bytes sent) so tests can assert what
a tile cost.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int


class RequestLog:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def add(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int, method: str = "GET") -> list[Request]:
        with self._lock:
            return [r for r in self.requests[mark:] if r.method == method]

    def bytes_since(self, mark: int) -> int:
        return sum(r.sent for r in self.since(mark))


class RangeServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = RequestLog()
        self.ranges = True
        self.latency = 0.0  # seconds every answer waits
        self.throttle: tuple[int, int] | None = None  # (status, Retry-After) for every GET
        self.truncate = False  # send half of each body, then close
        self.forbidden: set[str] = set()  # paths answered 403
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (tests of cut answers) are expected


def _etag(path: Path) -> str:
    info = path.stat()
    return (
        '"'
        + hashlib.sha256(f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}".encode()).hexdigest()[
            :16
        ]
        + '"'
    )


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            if server.latency:
                time.sleep(server.latency)
            wanted = self.headers.get("Range")
            path = server.root / unquote(urlsplit(self.path).path).lstrip("/")
            if body and server.throttle is not None:
                status, wait = server.throttle
                # What S3 says when it throttles (object stores read the code).
                slow = b"<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>"
                self._empty(status, {"Retry-After": str(wait)}, wanted, slow)
                return
            if urlsplit(self.path).path in server.forbidden:
                self._empty(403, {}, wanted)
                return
            if not path.is_file() or server.root not in path.resolve().parents:
                self._empty(404, {}, wanted)
                return
            data = path.read_bytes()
            etag = _etag(path)
            headers = {
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(path.stat().st_mtime, usegmt=True),
                "Accept-Ranges": "bytes" if server.ranges else "none",
            }
            expected = self.headers.get("If-Match")
            if expected is not None and expected != etag:
                self._empty(412, {}, wanted)
                return
            status, start, end = 200, 0, len(data) - 1
            match = RANGE.match(wanted or "") if server.ranges else None
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                if start >= len(data):
                    self._empty(416, {"Content-Range": f"bytes */{len(data)}"}, wanted)
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            payload = data[start : end + 1]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body and server.truncate:
                payload = payload[: len(payload) // 2]
                self.close_connection = True
            # Logged before the answer goes out: a client that counts requests right after
            # its read sees this one (logging after the write raced with it).
            server.log.add(
                Request(self.command, self.path, wanted, status, len(payload) if body else 0)
            )
            if body:
                self.wfile.write(payload)

        def _empty(
            self, status: int, headers: dict[str, str], wanted: str | None, text: bytes = b""
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            server.log.add(Request(self.command, self.path, wanted, status, 0))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)

    return Handler


class S3Server:
    """moto's S3 on a free port; every request counted (GET bodies' bytes too)."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class Quiet(MotoRequestHandler):  # type: ignore[misc]
            def log_request(self, *args: Any) -> None:
                pass

        self.log = RequestLog()
        app = _Counting(DomainDispatcherApplication(create_backend_app), self.log)
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Counting:
    def __init__(self, app: Callable[..., Iterable[bytes]], log: RequestLog) -> None:
        self.app = app
        self.log = log

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        status: list[int] = []

        def start(code: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, headers, *args)

        sent = 0
        for chunk in self.app(environ, start):
            sent += len(chunk)
            yield chunk
        method = environ["REQUEST_METHOD"]
        self.log.add(
            Request(method, environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE"), status[0],
                    sent if method == "GET" else 0)
        )  # fmt: skip


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
