"""An api in ``signed`` mode: URLs printed by ``tilecast sign`` are served; wrong
signatures, prefixes, past expiries and unknown keys are refused with clean JSON; a
URL signed with the previous key still verifies after a rotation; rate limiting keys on
the grant."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import ApiServer
from tests.integration.test_error_bodies import assert_clean_error
from tilecast.common import signing

pytestmark = pytest.mark.integration

OLD_KEYS = "old:old-secret-0123456789abcdef"
ROTATED_KEYS = "new:new-secret-0123456789abcdef," + OLD_KEYS
KEYS = signing.parse_keys(ROTATED_KEYS)


def sign_command(env: Mapping[str, str], *args: str) -> dict[str, str]:
    """The query of the URL ``tilecast sign`` prints."""
    out = subprocess.run(
        [sys.executable, "-m", "tilecast", "sign", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return dict(parse_qsl(urlsplit(out).query))


def test_signed_mode_end_to_end(
    start_api: Callable[[Mapping[str, str]], ApiServer],
    tilecast_env: dict[str, str],
    sources: dict[str, str],
) -> None:
    item = sources["pyramid"]
    env = {**tilecast_env, "TILECAST_ACCESS_MODE": "signed"}
    old_query = sign_command({**env, "TILECAST_SIGNING_KEYS": OLD_KEYS}, item)
    api = start_api({**env, "TILECAST_SIGNING_KEYS": ROTATED_KEYS})  # rotated: new first
    new_query = sign_command({**env, "TILECAST_SIGNING_KEYS": ROTATED_KEYS}, item)
    assert (old_query["keyid"], new_query["keyid"]) == ("old", "new")
    tile = f"/item/{item}/tiles/zxy/0/0/0"

    for query in (new_query, old_query):  # the rotated-out key still verifies
        served = api.get(tile, params=query)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
        assert served.headers["Cache-Control"].startswith("private, max-age=")
    # Protocol routes of the item are under the same grant; the ETag gives a 304.
    assert api.get(f"/item/{item}/tiles/dzi.dzi", params=new_query).status_code == 200
    assert api.get(f"/iiif/{item}/info.json", params=new_query).status_code == 200
    etag = served.headers["ETag"]
    assert api.get(tile, params=new_query, headers={"If-None-Match": etag}).status_code == 304

    now = int(time.time())
    refusals = {
        "no signature": ({}, 401),
        "wrong signature": ({**new_query, "signature": new_query["signature"][::-1]}, 403),
        "wrong prefix": (signing.sign(f"/item/{item}/iiif/", now + 600, KEYS), 403),
        "past expiry": (signing.sign(f"/item/{item}/", now - 1, KEYS), 403),
        "unknown key": (signing.sign(f"/item/{item}/", now + 600, {"gone": b"g" * 20}), 403),
        "management": (new_query, 403),
    }
    for name, (query, status) in refusals.items():
        path = "/sources" if name == "management" else tile
        assert_clean_error(api.get(path, params=query), status)
    manage = signing.sign("/manage/", now + 600, KEYS)
    assert api.get("/sources", params=manage).status_code == 200
    assert api.get("/healthz").status_code == 200


def test_rate_limit_per_grant(
    start_api: Callable[[Mapping[str, str]], ApiServer],
    tilecast_env: dict[str, str],
    sources: dict[str, str],
) -> None:
    item = sources["pyramid"]
    api = start_api(
        {
            **tilecast_env,
            "TILECAST_ACCESS_MODE": "signed",
            "TILECAST_SIGNING_KEYS": ROTATED_KEYS,
            "TILECAST_RATE_LIMIT": "0.001",  # no refill during the test
            "TILECAST_RATE_LIMIT_BURST": "3",
        }
    )
    first, second = (
        signing.sign(f"/item/{item}/", int(time.time()) + 600 + n, KEYS) for n in (0, 1)
    )
    statuses = [api.get(f"/item/{item}/tiles", params=first).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = api.get(f"/item/{item}/tiles", params=first)
    assert_clean_error(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert api.get(f"/item/{item}/tiles", params=second).status_code == 200  # its own bucket
