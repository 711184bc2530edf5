"""Objects behind plain HTTP(S) servers, read by Range requests through ``requests``.

- The object's size comes from HEAD (``Content-Length``), its version from ``ETag``
  (else ``Last-Modified``); every range request is conditional on it (``If-Match``,
  else ``If-Unmodified-Since``): a replaced object answers 412 and is never mixed
  with the old one.
- Each connection is made to an address checked as it is connected to (DNS rebinding:
  workers/remote/pinned.py).
- Redirects are never followed: the allow-list names what may be read, and a redirect
  could lead anywhere (an internal address); a redirecting URL is refused (404 naming
  the redirect) and the URL it names can be registered when it is allowed.
- A server that answers a range request with the whole object (200) does not read by
  range: the object goes through the download cache (workers/remote/opening.py).
- Throttling (429, 503) and failures (5xx, refused or reset connections, timeouts) are
  retried ``remote_retries`` times with exponential backoff (the server's
  ``Retry-After`` when it is shorter than our bound), then answered 503 with
  Retry-After. Every request is bounded by ``remote_timeout`` (connect, and between
  bytes); an answer shorter than its ``Content-Length`` is ``RemoteTruncated``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import quote

import requests

from tilecast.common.errors import RemoteNotFound, RemoteTruncated, RemoteUnavailable
from tilecast.common.girder import POOL_SIZE
from tilecast.common.remoteurls import PATH_SAFE, RemoteUrl
from tilecast.common.settings import Settings
from tilecast.workers.remote.httpretry import Retry, check_status, connection_failure, retrying
from tilecast.workers.remote.objects import (
    ObjectChanged,
    ObjectClient,
    ObjectInfo,
    RangeNotSupported,
)
from tilecast.workers.remote.pinned import pinned_session
from tilecast.workers.sources.files import FileTooLarge

log = logging.getLogger(__name__)

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
CHUNK = 1024 * 1024
T = TypeVar("T")


class HttpClient(ObjectClient):
    def __init__(self, base: RemoteUrl, settings: Settings) -> None:
        port = f":{base.port}" if base.port is not None else ""
        self.place = f"{base.scheme}://{base.host}{port}"
        self._session = pinned_session(settings, connections=4, pool_size=POOL_SIZE)
        self._timeout = settings.remote_timeout
        self._retries = settings.remote_retries
        self._backoff = settings.remote_backoff

    def head(self, key: str) -> ObjectInfo:
        def attempt() -> ObjectInfo:
            with self._request("HEAD", key, {}) as response:
                length = response.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise RemoteUnavailable(f"{self.place} does not say the size of /{key}")
                return ObjectInfo(
                    url=self._url(key),
                    size=int(length),
                    etag=_strong(response.headers.get("ETag")),
                    last_modified=response.headers.get("Last-Modified"),
                )

        return self._retrying(attempt)

    def get_range(self, key: str, info: ObjectInfo, start: int, end: int) -> bytes:
        headers = {"Range": f"bytes={start}-{end}", **_conditions(info)}

        def attempt() -> bytes:
            with self._request("GET", key, headers) as response:
                if response.status_code == 200:
                    if (start, end) != (0, info.size - 1):
                        raise RangeNotSupported(f"{self.place} ignores Range")
                else:
                    self._check_content_range(response, info, start, end)
                return self._body(response, end - start + 1)

        return self._retrying(attempt)

    def get_whole(self, key: str, info: ObjectInfo) -> Iterator[bytes]:
        response = self._retrying(lambda: self._request("GET", key, _conditions(info)))
        with response:
            received = 0
            try:
                for chunk in response.iter_content(CHUNK):
                    received += len(chunk)
                    yield chunk
            except requests.RequestException:
                raise RemoteTruncated(f"{self.place} stopped sending /{key}") from None
            if received != info.size:
                raise RemoteTruncated(f"{self.place} sent {received} of {info.size} bytes")

    def get_small(self, key: str, limit: int) -> bytes | None:
        def attempt() -> bytes | None:
            try:
                response = self._request("GET", key, {})
            except RemoteNotFound:
                return None
            with response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit():
                    if int(length) > limit:
                        raise FileTooLarge(f"{self.place}/{key} is larger than {limit} bytes")
                    return self._body(response, int(length))
                return self._bounded_body(response, key, limit)

        return self._retrying(attempt)

    def close(self) -> None:
        self._session.close()

    # -- one request --------------------------------------------------------------------------
    def _url(self, key: str) -> str:
        return f"{self.place}/{quote(key, safe=PATH_SAFE)}"

    def _request(self, method: str, key: str, headers: dict[str, str]) -> requests.Response:
        """The response (status below 300; the caller closes it), else the error of its
        status; Retry for what is worth another attempt."""
        try:
            response = self._session.request(
                method,
                self._url(key),
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(self._timeout, self._timeout),
            )
        except requests.RequestException as exc:
            raise connection_failure(self.place, exc) from exc
        if response.status_code in (412, 416):
            response.close()
            raise ObjectChanged(f"{self.place}/{key} changed while it was read; ask again")
        check_status(response, self.place, f"{self.place}/{key}")
        return response

    def _retrying(self, attempt: Callable[[], T]) -> T:
        return retrying(attempt, self.place, self._retries, self._backoff)

    def _check_content_range(
        self, response: requests.Response, info: ObjectInfo, start: int, end: int
    ) -> None:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if response.status_code != 206 or not match:
            raise RemoteUnavailable(f"{self.place} answered {response.status_code} to a range")
        if (int(match[1]), int(match[2])) != (start, end):
            raise RemoteUnavailable(f"{self.place} answered a different range than asked for")
        if match[3] != "*" and int(match[3]) != info.size:
            raise ObjectChanged(f"{info.url} changed size while it was read; ask again")

    def _bounded_body(self, response: requests.Response, key: str, limit: int) -> bytes:
        """A body sent without a length (chunked): read until it ends or passes ``limit``."""
        parts: list[bytes] = []
        received = 0
        try:
            for chunk in response.iter_content(CHUNK):
                received += len(chunk)
                if received > limit:
                    raise FileTooLarge(f"{self.place}/{key} is larger than {limit} bytes")
                parts.append(chunk)
        except requests.RequestException:
            raise Retry(RemoteTruncated(f"{self.place} stopped sending"), None) from None
        return b"".join(parts)

    def _body(self, response: requests.Response, expected: int | None) -> bytes:
        try:
            body = response.content
        except requests.RequestException:
            raise Retry(RemoteTruncated(f"{self.place} stopped sending"), None) from None
        if expected is not None and len(body) != expected:
            raise Retry(
                RemoteTruncated(f"{self.place} sent {len(body)} of the {expected} bytes"), None
            )
        return body


def _strong(etag: str | None) -> str | None:
    """A strong ETag (If-Match compares strong tags only); None for a weak one."""
    if etag is None or etag.startswith("W/"):
        return None
    return etag


def _conditions(info: ObjectInfo) -> dict[str, str]:
    if info.etag:
        return {"If-Match": info.etag}
    if info.last_modified:
        return {"If-Unmodified-Since": info.last_modified}
    return {}
