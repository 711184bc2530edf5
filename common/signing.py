"""Signed URLs: HMAC-SHA256 over a path prefix and an expiry time (the ``signed`` mode).

A grant is ``(prefix, expires, keyid)``; its signature is HMAC-SHA256, under the secret
of ``keyid``, of ``"tilecast-v1\\n{keyid}\\n{expires}\\n{prefix}"``, base64url without
padding. It travels as four query parameters on every URL it covers::

    ?prefix=/item/ab12/&expires=1767225600&keyid=k2&signature=...

Query parameters survive what viewers and CDNs do to URLs: OpenSeadragon appends a DZI
descriptor's query to every tile URL, tilecast's viewer passes the page's on, and a CDN
keys its copies on the whole URL; TileJSON templates carry them on too. IIIF clients,
which drop queries, take the path form of api/middleware/signed.py instead. The prefix travels
in the clear so that a refusal can say whether the signature or the path is wrong.

Prefixes are canonical paths (:func:`canonical_prefix`): they start and end with ``/``,
have no empty, ``.`` or ``..`` segment and only URL-safe characters, so a prefix means
one subtree and nothing else. A request is covered when its canonical path
(:func:`scope_path`) plus ``/`` starts with the prefix: ``/item/ab12/`` covers
``/item/ab12/tiles/zxy/0/0/0`` but not ``/item/ab123/...``. Every route of an item maps
into ``/item/{id}/``: ``/api/v1/item/{id}/x`` to ``/item/{id}/x``, ``/iiif/{id}/x`` to
``/item/{id}/iiif/x``, ``/viewer/{id}`` to ``/item/{id}/viewer``, ``/zarr/{id}/x`` (the
OME-Zarr view) to ``/item/{id}/zarr/x``, ``/dicomweb/studies/{the item's study UID}/x``
to ``/item/{id}/dicomweb/x``; so ``/item/{id}/``
grants the whole item, ``/item/{id}/tiles/`` its tile API only. Management routes
(sources, jobs, pre-rendering) map under ``/manage/`` (``POST
/item/{id}/tiles/precache`` is ``/manage/item/{id}/tiles/precache``): an item's grant
never allows them, a grant of ``/manage/`` allows them all.

Keys are ``keyid:secret`` pairs (``TILECAST_SIGNING_KEYS``, comma-separated); all of
them verify, the first signs. Rotation: add the new key first, let URLs signed with the
old one expire, then drop it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tilecast.common.errors import ConfigurationError, Forbidden, Unauthorized

PREFIX_PARAMETER = "prefix"
EXPIRES_PARAMETER = "expires"
KEYID_PARAMETER = "keyid"
SIGNATURE_PARAMETER = "signature"
PARAMETERS = (PREFIX_PARAMETER, EXPIRES_PARAMETER, KEYID_PARAMETER, SIGNATURE_PARAMETER)
MANAGE_PREFIX = "/manage/"
DICOMWEB_STUDIES = "/dicomweb/studies/"
MESSAGE_VERSION = "tilecast-v1"
# Shorter secrets are guessable offline from one signed URL.
MIN_SECRET_BYTES = 16
_SEGMENT = re.compile(r"[A-Za-z0-9._~\-]+")
_KEYID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
# Encoded separators and dots could smuggle a segment past the prefix comparison.
_ENCODED_TRICKS = re.compile(r"%(2f|2e|5c|00|25)", re.IGNORECASE)
_MAX_EXPIRES_DIGITS = 12
# The latest expiry a server accepts (a longer number is refused as not Unix seconds).
MAX_EXPIRES = 10**_MAX_EXPIRES_DIGITS - 1


@dataclass(frozen=True)
class Grant:
    """What a signature allows: paths under ``prefix`` until ``expires`` (Unix seconds)."""

    prefix: str
    expires: int
    keyid: str


def parse_keys(text: str) -> dict[str, bytes]:
    """``keyid:secret[,keyid:secret...]`` in order (the first signs); ConfigurationError
    on anything malformed."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.split(",")):
        keyid, colon, secret = part.partition(":")
        if not part or not colon or not _KEYID.fullmatch(keyid):
            raise ConfigurationError(
                "TILECAST_SIGNING_KEYS: each entry is keyid:secret, the key id of letters, "
                "digits, '.', '_' or '-'"
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"TILECAST_SIGNING_KEYS: the secret of {keyid!r} is shorter than "
                f"{MIN_SECRET_BYTES} bytes"
            )
        if keyid in keys:
            raise ConfigurationError(f"TILECAST_SIGNING_KEYS: key id {keyid!r} appears twice")
        keys[keyid] = secret.encode()
    return keys


def canonical_prefix(prefix: str) -> str:
    """The prefix as signed: ``/a/b/`` (a trailing ``/`` added); refused when it has an
    empty, ``.`` or ``..`` segment or a character that is not URL-safe."""
    if not prefix.startswith("/"):
        raise ValueError(f"a prefix starts with '/': {prefix!r}")
    segments = prefix.strip("/").split("/")
    if prefix != "/" and not all(_safe_segment(s) for s in segments):
        raise ValueError(f"not a canonical path prefix: {prefix!r}")
    return "/" if prefix == "/" else "/" + "/".join(segments) + "/"


def _safe_segment(segment: str) -> bool:
    return bool(_SEGMENT.fullmatch(segment)) and segment not in (".", "..")


def signature(grant: Grant, secret: bytes) -> str:
    message = f"{MESSAGE_VERSION}\n{grant.keyid}\n{grant.expires}\n{grant.prefix}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(prefix: str, expires: int, keys: Mapping[str, bytes]) -> dict[str, str]:
    """The query parameters of a grant of ``prefix`` until ``expires``, signed with the
    first key; ValueError for an expiry no server accepts (negative, or past
    :data:`MAX_EXPIRES`)."""
    if not 0 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires {expires} is not Unix seconds from 0 to {MAX_EXPIRES}")
    keyid, secret = next(iter(keys.items()))
    grant = Grant(canonical_prefix(prefix), expires, keyid)
    return {
        PREFIX_PARAMETER: grant.prefix,
        EXPIRES_PARAMETER: str(expires),
        KEYID_PARAMETER: keyid,
        SIGNATURE_PARAMETER: signature(grant, secret),
    }


def has_signature(args: Mapping[str, str]) -> bool:
    return any(args.get(name) for name in PARAMETERS)


def verify(args: Mapping[str, str], keys: Mapping[str, bytes], now: float | None = None) -> Grant:
    """The grant the query parameters prove: 401 when absent, 403 naming what is wrong."""
    missing = [name for name in PARAMETERS if not args.get(name)]
    if len(missing) == len(PARAMETERS):
        raise Unauthorized("this server needs signed URLs (prefix, expires, keyid, signature)")
    if missing:
        raise Unauthorized(f"the signed URL lacks {', '.join(missing)}", parameter=missing[0])
    grant = _grant(args)
    secret = keys.get(grant.keyid)
    if secret is None:
        raise Forbidden(f"unknown signing key id {grant.keyid!r}", parameter=KEYID_PARAMETER)
    sent = args[SIGNATURE_PARAMETER].encode()
    if not hmac.compare_digest(sent, signature(grant, secret).encode()):
        raise Forbidden("wrong signature", parameter=SIGNATURE_PARAMETER)
    if grant.expires <= (time.time() if now is None else now):
        raise Forbidden(f"the signed URL expired at {grant.expires}", parameter=EXPIRES_PARAMETER)
    return grant


def _grant(args: Mapping[str, str]) -> Grant:
    expires = args[EXPIRES_PARAMETER]
    if not (expires.isascii() and expires.isdigit() and len(expires) <= _MAX_EXPIRES_DIGITS):
        raise Forbidden("expires must be Unix seconds", parameter=EXPIRES_PARAMETER)
    prefix = args[PREFIX_PARAMETER]
    try:
        if canonical_prefix(prefix) != prefix:
            raise ValueError(prefix)
    except ValueError:
        raise Forbidden("not a canonical signed prefix", parameter=PREFIX_PARAMETER) from None
    return Grant(prefix, int(expires), args[KEYID_PARAMETER])


def check_path(grant: Grant, scope: str) -> None:
    """403 unless the request's canonical path ``scope`` lies under the grant's prefix."""
    if not (scope + "/").startswith(grant.prefix):
        raise Forbidden(
            f"the signature covers {grant.prefix}, not this path", parameter=PREFIX_PARAMETER
        )


def safe_request_path(path: str, raw_path: str) -> bool:
    """Whether a request path (decoded, and as sent) has no segment tricks: no empty,
    ``.`` or ``..`` segment, no backslash or NUL, no percent-encoded ``/``, ``.``, ``\\``."""
    if _ENCODED_TRICKS.search(raw_path) or "\\" in path or "\x00" in path:
        return False
    segments = path.strip("/").split("/")
    return path == "/" or all(s and s not in (".", "..") for s in segments)


def scope_path(path: str, item_id: str | None, manage: bool) -> str:
    """The canonical path a grant is compared with (module docstring)."""
    if manage:
        return MANAGE_PREFIX.rstrip("/") + path
    if item_id is None:
        return path
    if path.startswith(DICOMWEB_STUDIES):
        # /dicomweb/studies/{study}/x: the study is the item's (api/protocols/dicomweb_routes.py).
        rest = path[len(DICOMWEB_STUDIES) :].partition("/")[2]
        return f"/item/{item_id}/dicomweb" + (f"/{rest}" if rest else "")
    for public, canonical in _item_routes(item_id):
        if path == public or path.startswith(public + "/"):
            return canonical + path[len(public) :]
    return path


def _item_routes(item_id: str) -> tuple[tuple[str, str], ...]:
    item = f"/item/{item_id}"
    return (
        (item, item),
        (f"/api/v1{item}", item),
        (f"/iiif/{item_id}", f"{item}/iiif"),
        (f"/viewer/{item_id}", f"{item}/viewer"),
        (f"/zarr/{item_id}", f"{item}/zarr"),
    )


def public_path(prefix: str) -> str:
    """A URL path a grant of ``prefix`` opens: the item's viewer for a whole item, the
    route itself otherwise (the inverse of :func:`scope_path`)."""
    if prefix.startswith(MANAGE_PREFIX):
        return prefix[len(MANAGE_PREFIX) - 1 :].rstrip("/") or "/"
    match = re.fullmatch(r"/item/([^/]+)/(.*)", prefix)
    if match is None:
        return prefix.rstrip("/") or "/"
    item_id, rest = match.groups()
    if rest in ("", "viewer/"):
        return f"/viewer/{item_id}"
    if rest.startswith("zarr/"):  # the OME-Zarr view's root, as zarr readers open it
        return f"/zarr/{item_id}/" + rest[len("zarr/") :]
    if rest.startswith("iiif/"):
        return f"/iiif/{item_id}/" + (rest[len("iiif/") :].rstrip("/") or "info.json")
    return prefix.rstrip("/")
