"""``tilecast sign``: a signed URL for the ``signed`` access mode (common/signing.py).

``tilecast sign ITEM_ID`` grants the whole item (``/item/{id}/``: tiles, protocols, the
viewer) and prints its viewer URL; ``--prefix`` grants a part (``/item/{id}/tiles/``)
or management (``/manage/``, no item needed); ``--in-path`` puts the grant in the path
(``/signed/{keyid}/{expires}/{signature}/viewer/{id}``), which IIIF clients keep.
Signed with the first of ``TILECAST_SIGNING_KEYS``; needs no Redis and no api.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any
from urllib.parse import urlencode

from tilecast.common import signing
from tilecast.common.errors import BadRequest, ConfigurationError
from tilecast.common.settings import Settings

# api/middleware/signed.py's path form: /signed/{keyid}/{expires}/{signature}/... (the CLI imports
# no api code).
PATH_MARK = "signed"

DEFAULT_LIFETIME = 24 * 3600
DEFAULT_URL = "http://127.0.0.1:8080"


def add_parser(commands: Any) -> None:
    sign = commands.add_parser("sign", help="print a signed URL (TILECAST_ACCESS_MODE=signed)")
    sign.add_argument("item_id", nargs="?", metavar="ITEM_ID", help="the item to grant")
    sign.add_argument("--prefix", help="the path prefix granted (default: /item/ITEM_ID/)")
    sign.add_argument("--expires-in", type=int, default=DEFAULT_LIFETIME, metavar="SECONDS")
    sign.add_argument(
        "--url",
        help="the api's base URL (default: that of the running tilecast up, "
        "else http://127.0.0.1:8080)",
    )
    sign.add_argument(
        "--in-path",
        action="store_true",
        help="the grant in the path (/signed/...), which IIIF clients keep: whole items only",
    )


def signed_url(args: argparse.Namespace, settings: Settings, now: float | None = None) -> str:
    if not settings.signing_keys:
        raise ConfigurationError("set TILECAST_SIGNING_KEYS (keyid:secret[,...]) to sign")
    now_seconds = int(time.time() if now is None else now)
    if args.expires_in <= 0:
        raise BadRequest(
            f"--expires-in {args.expires_in}: give a positive number of seconds "
            "(the server refuses expired grants)"
        )
    expires = now_seconds + args.expires_in
    if expires > signing.MAX_EXPIRES:
        raise BadRequest(
            f"--expires-in {args.expires_in}: give at most {signing.MAX_EXPIRES - now_seconds} "
            f"seconds (the server refuses expiries past {signing.MAX_EXPIRES} Unix seconds)"
        )
    prefix = args.prefix or (f"/item/{args.item_id}/" if args.item_id else None)
    if prefix is None:
        raise BadRequest("name an ITEM_ID or a --prefix")
    try:
        prefix = signing.canonical_prefix(prefix)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    query = signing.sign(prefix, expires, signing.parse_keys(settings.signing_keys))
    base = (DEFAULT_URL if args.url is None else args.url).rstrip("/")
    if not args.in_path:
        return f"{base}{signing.public_path(prefix)}?{urlencode(query, safe='/')}"
    if not re.fullmatch(r"/item/[^/]+/|/manage/", prefix):
        raise BadRequest("--in-path grants a whole item (/item/ID/) or /manage/ only")
    segment = "/".join(("", PATH_MARK, query["keyid"], query["expires"], query["signature"]))
    return f"{base}{segment}{signing.public_path(prefix)}"
