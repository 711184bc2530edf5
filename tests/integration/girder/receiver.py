"""A stand-in for tilecast's plugin endpoints: records every request the Girder plugin
makes and answers with a status the test chooses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def item_id(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        # Statuses to answer, in order; once used up, ``default_status``.
        self.statuses: list[int] = []
        self.default_status = 201
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer((HOST, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self, *statuses: int, default: int = 201) -> None:
        with self._cond:
            self.requests.clear()
            self.statuses = list(statuses)
            self.default_status = default

    def wait_for(
        self, match: Callable[[Received], bool], count: int = 1, timeout: float = 30
    ) -> list[Received]:
        """The requests matching ``match`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests if match(r)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._cond.wait(left)
        assert len(found) >= count, f"wanted {count}, got {found}; all: {self.requests}"
        return found

    def about(self, item_id: str) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if r.item_id == item_id]

    def _record(self, received: Received) -> int:
        with self._cond:
            self.requests.append(received)
            status = self.statuses.pop(0) if self.statuses else self.default_status
            self._cond.notify_all()
            return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status = receiver._record(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                payload = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
