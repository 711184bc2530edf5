"""What an HTTP answer means to a URL source, and retrying the answers worth another try:
shared by plain HTTP(S) objects (workers/remote/httpobjects.py) and DICOMweb servers
(workers/remote/dicomweb.py).

- 404/410 are ``RemoteNotFound``, 401/403 ``RemoteForbidden``, a redirect (never
  followed: it could lead anywhere the allow-list does not name) a ``RemoteNotFound``
  saying so;
- throttling (429, or 503 with ``Retry-After``), other 5xx answers, refused or reset
  connections and timeouts are retried ``retries`` times with exponential backoff from
  ``backoff`` seconds, with jitter (a server's ``Retry-After`` is honoured up to four
  times our own backoff), then raised: ``RemoteThrottled`` carrying the server's
  ``Retry-After``, else ``RemoteUnavailable``; both are 503 with Retry-After.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests

from tilecast.common.errors import (
    RemoteForbidden,
    RemoteNotFound,
    RemoteThrottled,
    RemoteUnavailable,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300
T = TypeVar("T")


class Retry(Exception):
    """One attempt failed in a way worth another (throttled, 5xx, connection)."""

    def __init__(self, error: Exception, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def connection_failure(place: str, exc: requests.RequestException) -> Retry:
    """A request that got no answer: worth another attempt."""
    if isinstance(exc, requests.Timeout):
        return Retry(RemoteUnavailable(f"{place} timed out"), None)
    return Retry(RemoteUnavailable(f"{place} is unreachable"), None)


def check_status(response: requests.Response, place: str, where: str) -> None:
    """Nothing for an answer below 300; else (the response closed) the error its status
    means, or Retry when another attempt may succeed. ``where`` names what was asked
    for in messages (never a credential, never a query string)."""
    status = response.status_code
    if status < 300:
        return
    response.close()
    if 300 <= status < 400:
        raise RemoteNotFound(f"{where} redirects elsewhere, which is not followed")
    if status in (404, 410):
        raise RemoteNotFound(f"{where} does not exist")
    if status in (401, 403):
        raise RemoteForbidden(f"{place} refuses tilecast access to {where}")
    wait = retry_after(response.headers.get("Retry-After"))
    if status == 429 or (status == 503 and wait is not None):
        raise Retry(RemoteThrottled(f"{place} is throttling requests"), wait)
    if status >= 500:
        raise Retry(RemoteUnavailable(f"{place} answered {status}"), wait)
    raise RemoteUnavailable(f"{place} answered {status}")


def retrying(attempt: Callable[[], T], place: str, retries: int, backoff: float) -> T:
    """``attempt()``, again after a backoff while it fails in a way worth retrying; the
    last failure's error once the retries are spent."""
    for number in range(retries + 1):
        try:
            return attempt()
        except Retry as retry:
            if number == retries:
                error = retry.error
                if isinstance(error, RemoteThrottled) and retry.wait is not None:
                    error.retry_after = max(1, round(retry.wait))
                log.warning("%s: %s after %d retries", place, error, retries)
                raise error from None
            pause = backoff * 2**number * (1 + random.random())
            time.sleep(min(retry.wait, pause * 4) if retry.wait is not None else pause)
    raise AssertionError("unreachable")


def retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (a number or an HTTP date), bounded."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))
