"""The service account's conversation with Girder's REST API, through girder-client.

Every call is bounded by ``girder_timeout`` (connect and each read), goes through one
pooled ``requests.Session`` per process, and authenticates with the service account's
API key; a 401 (the token expired or Girder restarted) re-authenticates once and retries.
Failures become tilecast errors: unreachable, timing out or 5xx is GirderUnavailable;
what a 4xx means depends on the call, so :class:`GirderHttpError` carries the status.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
from girder_client import GirderClient, HttpError

from tilecast.common.errors import ConfigurationError, GirderUnavailable
from tilecast.common.girder import SECRET_HEADER, pooled_session
from tilecast.common.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class GirderHttpError(Exception):
    """Girder answered a 4xx (other than a 401 that re-authentication fixed)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"Girder answered {status}: {text[:200]}")
        self.status = status
        self.text = text


class GirderConnection:
    def __init__(self, settings: Settings) -> None:
        if not settings.girder_url:
            raise ConfigurationError("Girder items need TILECAST_GIRDER_URL")
        self.api_url = settings.girder_url.rstrip("/")
        self.timeout = (settings.girder_timeout, settings.girder_timeout)
        self._api_key = settings.girder_api_key
        self._secret = settings.girder_secret
        self._client = GirderClient(apiUrl=self.api_url)
        self._session = pooled_session()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self._client.session(self._session))
        self._auth_lock = threading.Lock()
        self._authenticated = not self._api_key  # no key: anonymous, public items only

    # -- calls ------------------------------------------------------------------------------
    def get_json(self, path: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return self._call(
            lambda: self._client.sendRestRequest(
                "GET", path, dict(parameters or {}), timeout=self.timeout
            )
        )

    def get_raw(self, path: str, headers: Mapping[str, str]) -> requests.Response:
        """A streamed response (any status below 400); the caller closes it."""
        return self._call(
            lambda: self._client.sendRestRequest(
                "GET", path, headers=dict(headers), jsonResp=False, stream=True,
                timeout=self.timeout,
            )
        )  # fmt: skip

    def get_plugin_json(self, path: str) -> Any:
        """A call to tilecast's own Girder plugin, which checks the shared secret."""
        headers = {SECRET_HEADER: self._secret} if self._secret else {}
        return self._call(
            lambda: self._client.sendRestRequest("GET", path, headers=headers, timeout=self.timeout)
        )

    def close(self) -> None:
        self._stack.close()

    # -- authentication and errors ------------------------------------------------------------
    def _call(self, send: Callable[[], T]) -> T:
        for attempt in (1, 2):
            token = self._ensure_token()
            try:
                return send()
            except HttpError as exc:
                if exc.status == 401 and attempt == 1 and self._api_key:
                    self._reauthenticate(token)
                    continue
                raise _mapped(exc) from None
            except requests.RequestException as exc:
                raise _unavailable(self.api_url, exc) from None
        raise AssertionError("unreachable")

    def _ensure_token(self) -> str:
        with self._auth_lock:
            if not self._authenticated:
                self._authenticate()
            return self._client.token

    def _reauthenticate(self, stale: str) -> None:
        with self._auth_lock:
            if self._client.token == stale:  # nobody renewed it in the meantime
                self._authenticate()

    def _authenticate(self) -> None:
        try:
            answer = self._client.sendRestRequest(
                "POST", "api_key/token", {"key": self._api_key}, timeout=self.timeout
            )
            self._client.setToken(answer["authToken"]["token"])
        except HttpError as exc:
            if exc.status >= 500:
                raise _mapped(exc) from None
            log.error("Girder refused the API key in TILECAST_GIRDER_API_KEY: %s", exc.status)
            raise GirderUnavailable("Girder refused tilecast's API key") from None
        except requests.RequestException as exc:
            raise _unavailable(self.api_url, exc) from None
        except (KeyError, TypeError):
            raise GirderUnavailable("Girder's token answer is malformed") from None
        self._authenticated = True


def _mapped(exc: HttpError) -> Exception:
    if exc.status >= 500:
        log.warning("Girder answered %s to %s %s", exc.status, exc.method, exc.url)
        return GirderUnavailable(f"Girder answered {exc.status}")
    return GirderHttpError(exc.status, exc.responseText or "")


def _unavailable(api_url: str, exc: requests.RequestException) -> GirderUnavailable:
    log.warning("Girder at %s is unavailable: %s", api_url, exc)
    kind = "timed out" if isinstance(exc, requests.Timeout) else "is unreachable"
    return GirderUnavailable(f"Girder {kind}")
