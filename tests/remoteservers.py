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
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tilecast.common.remoteurls import RemoteOptions, RemoteSource, parse_url
from tilecast.common.settings import Settings

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int


class RequestLog:
    """Requests answered. A request is logged once its answer is sent, which may be just
    after the client has it: reading the log first waits for answers in progress."""

    SETTLE = 2.0  # seconds an answer in progress is waited for

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._serving = 0
        self._lock = threading.Condition()

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around the answer of one request (its ``add`` inside)."""
        with self._lock:
            self._serving += 1
        try:
            yield
        finally:
            with self._lock:
                self._serving -= 1
                self._lock.notify_all()

    def add(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def mark(self) -> int:
        with self._lock:
            self._lock.wait_for(lambda: self._serving == 0, self.SETTLE)
            return len(self.requests)

    def since(self, mark: int, method: str = "GET") -> list[Request]:
        with self._lock:
            self._lock.wait_for(lambda: self._serving == 0, self.SETTLE)
            return [r for r in self.requests[mark:] if r.method == method]

    def bytes_since(self, mark: int) -> int:
        return sum(r.sent for r in self.since(mark))


class LoopbackServer:
    """An HTTP server of the tests on a free loopback port, served by a daemon thread."""

    server: Any  # an http.server or werkzeug server bound to 127.0.0.1:0

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        server = _QuietServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._start(server)

    def _start(self, server: Any) -> None:
        self.server = server
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RangeServer(LoopbackServer):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = RequestLog()
        self.ranges = True
        self.latency = 0.0  # seconds every answer waits
        self.throttle: tuple[int, int] | None = None  # (status, Retry-After) for every GET
        self.truncate = False  # send half of each body, then close
        self.forbidden: set[str] = set()  # paths answered 403
        self._serve(_handler(self))

    def __enter__(self) -> RangeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
            with server.log.serving():
                self._answer(body=False)

        def do_GET(self) -> None:
            with server.log.serving():
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
            size = path.stat().st_size
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
            status, start, end = 200, 0, size - 1
            match = RANGE.match(wanted or "") if server.ranges else None
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else size - 1, size - 1)
                if start >= size:
                    self._empty(416, {"Content-Range": f"bytes */{size}"}, wanted)
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(end + 1 - start))
            self.end_headers()
            sent = 0
            if body:
                # Only the bytes asked for are read (a range of a 1 GB file costs its range).
                count = end + 1 - start
                if server.truncate:
                    count //= 2
                    self.close_connection = True
                with path.open("rb") as file:
                    file.seek(start)
                    while sent < count:
                        part = file.read(min(CHUNK, count - sent))
                        if not part:
                            break
                        self.wfile.write(part)
                        sent += len(part)
            server.log.add(Request(self.command, self.path, wanted, status, sent))

        def _empty(
            self, status: int, headers: dict[str, str], wanted: str | None, text: bytes = b""
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)
            server.log.add(Request(self.command, self.path, wanted, status, 0))

    return Handler


class S3Server(LoopbackServer):
    """moto's S3 on a free port; every request counted (GET bodies' bytes too).

    ``latency``: seconds every answer waits (a network's round trip). ``direct_ranges``:
    a ranged GET of a stored object is answered from moto's own storage of it, reading
    the range only -- moto itself reads (and copies) the whole object for every GET,
    which for a 1 GB object costs far more than any real store's range read; every other
    request, and any ranged GET it does not answer exactly (a condition that fails, a
    missing key), is moto's."""

    def __init__(self, direct_ranges: bool = False) -> None:
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
        app = _Counting(DomainDispatcherApplication(create_backend_app), self)
        self.latency = 0.0
        self.direct_ranges = direct_ranges
        self._start(make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet))


class _Counting:
    def __init__(self, app: Callable[..., Iterable[bytes]], server: S3Server) -> None:
        self.app = app
        self.server = server
        self.log = server.log

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        if self.server.latency:
            time.sleep(self.server.latency)
        status: list[int] = []
        direct = _direct_range(environ) if self.server.direct_ranges else None
        if direct is not None:
            code, headers, payload = direct
            with self.log.serving():
                start_response(code, headers)
                yield payload
                self.log.add(
                    Request("GET", environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE"),
                            206, len(payload))
                )  # fmt: skip
            return

        def start(code: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, headers, *args)

        sent = 0
        with self.log.serving():
            for chunk in self.app(environ, start):
                sent += len(chunk)
                yield chunk
            method = environ["REQUEST_METHOD"]
            self.log.add(
                Request(method, environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE"),
                        status[0], sent if method == "GET" else 0)
            )  # fmt: skip


# The standard credential chain as a worker host would have it (moto takes any keys).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # No ~/.aws files of the machine: the chain must find the variables above.
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@contextmanager
def s3_serving(folder: Path, bucket: str, prefix: str) -> Iterator[S3Server]:
    """moto's S3 with ``bucket`` holding every file below ``folder`` under
    ``prefix/<its path in folder>``, the AWS variables set for the duration."""
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    server = S3Server()
    try:
        import boto3

        boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                upload(server, bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", path)
        yield server
    finally:
        server.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def upload(server: S3Server, bucket: str, key: str, path: Path) -> None:
    """``path``'s bytes as object ``key`` of ``bucket`` (replacing it)."""
    import obstore
    from obstore.store import S3Store

    # One PUT, waited for (a 1 GB object takes moto minutes on a busy machine): moto
    # completes a large multipart upload slowly enough for the client to retry the
    # completion, which moto then fails.
    store = S3Store(
        bucket, endpoint=server.url, virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "900s"},
    )  # fmt: skip
    obstore.put(store, key, path, use_multipart=False)


def _direct_range(environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """A 206 for a ranged GET of a stored object, read from moto's storage (S3Server's
    ``direct_ranges``); None to let moto answer."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    match = RANGE.match(environ.get("HTTP_RANGE") or "")
    if environ["REQUEST_METHOD"] != "GET" or not match or environ.get("QUERY_STRING"):
        return None
    bucket, _, name = unquote(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
    try:
        key = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, name)
    except Exception:  # moto's NoSuchBucket and friends: moto says it
        return None
    if key is None or environ.get("HTTP_IF_MATCH", key.etag) != key.etag:
        return None
    start = int(match[1])
    end = min(int(match[2]) if match[2] else key.size - 1, key.size - 1)
    if start > end:
        return None
    with key.lock:
        key._value_buffer.seek(start)
        payload = key._value_buffer.read(end + 1 - start)
    headers = [
        ("Content-Type", "binary/octet-stream"),
        ("Content-Length", str(len(payload))),
        ("Content-Range", f"bytes {start}-{end}/{key.size}"),
        ("ETag", key.etag),
        ("Last-Modified", key.last_modified_RFC1123),
        ("Accept-Ranges", "bytes"),
    ]
    return "206 Partial Content", headers, payload


def delete(server: S3Server, bucket: str, key: str) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket, endpoint=server.url, virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )  # fmt: skip
    obstore.delete(store, key)


@dataclass
class Place:
    """One kind of server (``http`` or ``s3``), the URLs of what it serves, how a worker
    is configured to read them, and the server's request log."""

    kind: str
    server: RangeServer | S3Server
    settings: Settings
    base: str  # the URL of the served folder
    options: RemoteOptions

    @property
    def log(self) -> RequestLog:
        return self.server.log

    def source(self, name: str) -> RemoteSource:
        return RemoteSource(parse_url(f"{self.base}/{name}"), self.options)

    def locator(self, name: str) -> str:
        return self.source(name).locator()

    @classmethod
    def of(
        cls,
        server: RangeServer | S3Server,
        bucket: str,
        prefix: str,
        redis_url: str,
        download_dir: Path,
        **settings: Any,
    ) -> Place:
        """``server``'s files as URL sources: the Range server's folder, or the S3
        server's ``bucket/prefix`` (s3_serving), read through its endpoint."""
        options = {"remote_backoff": 0.01, "remote_timeout": 5.0, **settings}
        resolved = Settings(
            cache_url=redis_url,
            remote_allow=f"{server.url}/,s3://{bucket}/{prefix}/",
            remote_endpoints=server.url,
            remote_download_dir=str(download_dir),
            **options,
        ).resolved()
        if isinstance(server, RangeServer):
            return cls("http", server, resolved, server.url, RemoteOptions())
        base = f"s3://{bucket}/{prefix}"
        return cls("s3", server, resolved, base, RemoteOptions(endpoint_url=server.url))


@contextmanager
def placed(
    server: RangeServer | S3Server,
    bucket: str,
    prefix: str,
    redis_url: str,
    download_dir: Path,
    state: Any,
) -> Iterator[Place]:
    """``Place.of`` for one test: no opened reader from another test before it, and its
    readers and the blocks it shared in Redis gone after it."""
    from tilecast.workers.remote.opening import forget_readers

    forget_readers()
    try:
        yield Place.of(server, bucket, prefix, redis_url, download_dir)
    finally:
        forget_readers()
        for key in state.scan_iter(match="tc:remote:*"):
            state.delete(key)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
