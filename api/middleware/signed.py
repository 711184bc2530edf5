"""The ``signed`` access mode: every item and management request carries a signed grant
(common/signing.py) whose prefix covers its path; checked before anything is read.

Item routes (``/item/{id}/...``, ``/api/v1/item/{id}/...``, ``/iiif/{id}/...``,
``/viewer/{id}``) need a grant of the item (or a part of it); management routes need a
grant under ``/manage/``; the service routes (health, metrics, the OpenAPI document,
the viewer's static files and index page) stay open, as in ``girder`` mode. The check
costs one HMAC and no Redis round trip, so a cache hit stays one.

IIIF clients build tile URLs from the service ``id`` and drop any query, so a grant may
also ride in the path: ``/signed/{keyid}/{expires}/{signature}/iiif/{id}/info.json``.
That form always grants the route's whole item (its signed prefix is ``/item/{id}/``; a
management route's is ``/manage/``). :class:`SignedPaths` moves the segment into
``SCRIPT_NAME``, so every URL the api builds (the IIIF ``id``, TileJSON templates, the
viewer's api root) carries it on.

An answer may be cached no longer than its grant lasts: ``max-age`` is cut to the
seconds left (and stays ``private``, as behind any access check: a shared cache that
ignored the query string would otherwise hand the image to anyone).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, g, request

from tilecast.common import signing
from tilecast.common.errors import BadRequest
from tilecast.common.settings import Settings

MAX_AGE = re.compile(r"max-age=(\d+)")
PATH_MARK = "signed"
ENVIRON_KEY = "tilecast.signed_path"


class SignedPaths:
    """WSGI middleware: ``/signed/{keyid}/{expires}/{signature}/rest`` is served as
    ``/rest`` below a script root of the signed segment, the grant kept in the environ."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        parts = environ.get("PATH_INFO", "").split("/", 5)
        if len(parts) == 6 and parts[1] == PATH_MARK:
            _, _, keyid, expires, signature, rest = parts
            environ[ENVIRON_KEY] = {
                signing.KEYID_PARAMETER: keyid,
                signing.EXPIRES_PARAMETER: expires,
                signing.SIGNATURE_PARAMETER: signature,
            }
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/".join(parts[:5])
            environ["PATH_INFO"] = "/" + rest
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def signed_path(keyid: str, expires: int, signature: str) -> str:
    return f"/{PATH_MARK}/{keyid}/{expires}/{signature}"


def grant_arguments(item_id: str | None, manage: bool) -> dict[str, str]:
    """The request's grant: from the path (its prefix implied by the route) or the query."""
    in_path = request.environ.get(ENVIRON_KEY)
    if in_path is None:
        return dict(request.args)
    prefix = signing.MANAGE_PREFIX if manage else f"/item/{item_id}/"
    return {**in_path, signing.PREFIX_PARAMETER: prefix}


def raw_path(environ: Mapping[str, Any]) -> str:
    """The path as sent, where the server tells it (gunicorn; granian does not)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    return str(raw).split("?", 1)[0]


def verify_path(
    path: str,
    raw: str,
    item_id: str | None,
    manage: bool,
    args: Mapping[str, str],
    keys: dict[str, bytes],
) -> signing.Grant:
    """The grant of ``args`` when it covers ``path``; else the 400, 401 or 403."""
    if not signing.safe_request_path(path, raw):
        raise BadRequest("the path has empty, '.' or '..' segments or encoded separators")
    grant = signing.verify(args, keys)
    signing.check_path(grant, signing.scope_path(path, item_id, manage))
    return grant


def check_request(keys: dict[str, bytes], manage_endpoints: frozenset[str]) -> None:
    """Raise 401/403 unless the request's grant covers its path."""
    endpoint = request.endpoint or ""
    manage = endpoint in manage_endpoints
    item_id = (request.view_args or {}).get("item_id")
    if not manage and item_id is None:
        return  # service routes, and 404s
    args = grant_arguments(item_id, manage)
    grant = verify_path(request.path, raw_path(request.environ), item_id, manage, args, keys)
    g.signed_grant = grant
    g.signed_client = grant.keyid + ":" + args[signing.SIGNATURE_PARAMETER]


def limit_max_age(response: Response) -> Response:
    grant: signing.Grant | None = g.get("signed_grant")
    control = response.headers.get("Cache-Control")
    if grant is None or not control:
        return response
    cut = cut_max_age(control, grant.expires)
    if cut != control:
        response.headers["Cache-Control"] = cut
    return response


def cut_max_age(control: str, expires: int) -> str:
    """``control`` with its max-age no longer than the seconds until ``expires``."""
    left = max(0, expires - int(time.time()))
    match = MAX_AGE.search(control)
    if match and int(match.group(1)) > left:
        return MAX_AGE.sub(f"max-age={left}", control)
    return control


def install(app: Flask, settings: Settings, manage_endpoints: frozenset[str]) -> None:
    keys = signing.parse_keys(settings.signing_keys)
    app.wsgi_app = SignedPaths(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def check_signed() -> None:
        if request.method == "OPTIONS" or (request.endpoint or "").startswith("girder."):
            return  # CORS preflights carry no query; the plugin's calls check their secret
        check_request(keys, manage_endpoints)

    app.after_request(limit_max_age)
