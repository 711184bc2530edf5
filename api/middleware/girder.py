"""The api's questions to Girder: may this token read this item, is this token an
admin's. Plain REST over one pooled HTTP session, every call bounded by
``girder_timeout``; an unreachable Girder is a 503, never a hang.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from tilecast.common.errors import (
    Forbidden,
    GirderUnavailable,
    TilecastError,
    Unauthorized,
    UnknownSource,
)
from tilecast.common.girder import TOKEN_HEADER, is_object_id, pooled_session
from tilecast.common.settings import Settings

log = logging.getLogger(__name__)


class GirderAuthority:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.girder_url
        self.timeout = settings.girder_timeout
        self.session = pooled_session()

    def check_read(self, item_id: str, token: str | None) -> None:
        """Return when ``token`` (None: anonymous) may read the item; raise the error a
        client gets otherwise (401, 403, 404; 503 when Girder does not answer)."""
        if not is_object_id(item_id):
            raise UnknownSource.girder_item(item_id)
        response = self._get(f"item/{item_id}", token)
        if response.status_code == 200:
            return
        raise _refusal(response, item_id, token)

    def is_admin(self, token: str) -> bool:
        """Whether ``token`` belongs to a Girder site administrator."""
        response = self._get("user/me", token)
        if response.status_code != 200:
            raise _unexpected(response) if response.status_code >= 500 else _bad_token()
        user: Any = _json(response)
        return isinstance(user, dict) and bool(user.get("admin"))

    def _get(self, path: str, token: str | None) -> requests.Response:
        headers = {TOKEN_HEADER: token} if token else {}
        try:
            response = self.session.get(f"{self.url}/{path}", headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            log.warning("girder unreachable: %s", exc)
            raise GirderUnavailable("Girder is unreachable; try again shortly") from None
        if response.status_code >= 500:
            raise _unexpected(response)
        return response


def _refusal(response: requests.Response, item_id: str, token: str | None) -> TilecastError:
    status = response.status_code
    if status == 401:
        if token:
            return Unauthorized(
                "the Girder token is invalid or has expired, or may not read this item"
            )
        return Unauthorized("this item is not public: send a Girder token that may read it")
    if status == 403:
        return Forbidden(f"this Girder user may not read item {item_id}")
    if status in (400, 404):
        # Girder answers 400 "Invalid item id" for ids it does not know.
        return UnknownSource.girder_item(item_id)
    return _unexpected(response)


def _bad_token() -> Unauthorized:
    return Unauthorized("the Girder token is invalid or has expired")


def _unexpected(response: requests.Response) -> GirderUnavailable:
    log.warning("girder answered %s: %.200s", response.status_code, response.text)
    return GirderUnavailable(f"Girder answered {response.status_code}; try again shortly")


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
