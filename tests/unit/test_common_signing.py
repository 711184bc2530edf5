"""Signed URL grants (common/signing.py): signing, verification, rotation, expiry,
prefixes and the path tricks that must not slip past a prefix."""

from __future__ import annotations

import pytest

from tilecast.common import signing
from tilecast.common.errors import ConfigurationError, Forbidden, Unauthorized
from tilecast.common.settings import Settings

ITEM = "0123456789abcdef01234567"
NOW = 1_800_000_000
OLD = {"k1": b"old-secret-0123456789"}
NEW = {"k2": b"new-secret-9876543210"}


def signed(prefix: str = f"/item/{ITEM}/", expires: int = NOW + 60, keys=OLD) -> dict[str, str]:
    return signing.sign(prefix, expires, keys)


def test_a_signed_grant_verifies_with_its_prefix_and_expiry() -> None:
    grant = signing.verify(signed(), OLD, now=NOW)
    assert grant == signing.Grant(f"/item/{ITEM}/", NOW + 60, "k1")


def test_rotation_every_configured_key_verifies_the_first_signs() -> None:
    keys = signing.parse_keys("k2:new-secret-9876543210,k1:old-secret-0123456789")
    assert list(keys) == ["k2", "k1"]
    assert signing.sign("/item/a/", NOW + 60, keys)["keyid"] == "k2"
    assert signing.verify(signed(keys=OLD), keys, now=NOW).keyid == "k1"
    assert signing.verify(signed(keys=NEW), keys, now=NOW).keyid == "k2"
    with pytest.raises(Forbidden, match="unknown signing key id 'k1'"):
        signing.verify(signed(keys=OLD), NEW, now=NOW)  # dropped after rotation


def test_no_signature_is_401_a_partial_one_names_what_lacks() -> None:
    with pytest.raises(Unauthorized, match="needs signed URLs"):
        signing.verify({}, OLD, now=NOW)
    args = signed()
    del args["signature"]
    with pytest.raises(Unauthorized, match="lacks signature"):
        signing.verify(args, OLD, now=NOW)


def test_expired_grants_are_refused() -> None:
    with pytest.raises(Forbidden, match="expired") as info:
        signing.verify(signed(expires=NOW), OLD, now=NOW)
    assert info.value.parameter == "expires"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("expires", str(NOW + 3600)),  # lengthened
        ("prefix", "/item/"),  # widened
        ("prefix", "/item/other/"),
        ("keyid", "k2"),  # another key that exists
        ("signature", "A" * 43),
    ],
)
def test_tampering_with_any_parameter_is_refused(name: str, value: str) -> None:
    args = {**signed(), name: value}
    with pytest.raises(Forbidden):
        signing.verify(args, {**OLD, **NEW}, now=NOW)


@pytest.mark.parametrize("expires", ["-5", "1e9", "\uff11\uff12", "9" * 13, " 12"])
def test_expires_must_be_plain_unix_seconds(expires: str) -> None:
    with pytest.raises(Forbidden, match="expires"):
        signing.verify({**signed(), "expires": expires}, OLD, now=NOW)


@pytest.mark.parametrize(
    "prefix", ["item/a/", "/item/../a/", "/item//a/", "/item/./a/", "/item/a%2F/", "/it em/"]
)
def test_prefixes_must_be_canonical(prefix: str) -> None:
    with pytest.raises(ValueError):
        signing.canonical_prefix(prefix)


def test_a_non_canonical_prefix_in_a_url_is_refused() -> None:
    args = {**signed(), "prefix": f"/item/{ITEM}"}  # trailing slash dropped
    with pytest.raises(Forbidden, match="canonical"):
        signing.verify(args, OLD, now=NOW)


def test_prefix_covers_its_subtree_only() -> None:
    grant = signing.Grant(f"/item/{ITEM}/tiles/", NOW, "k1")
    signing.check_path(grant, f"/item/{ITEM}/tiles")
    signing.check_path(grant, f"/item/{ITEM}/tiles/zxy/0/0/0")
    for outside in (f"/item/{ITEM}/tilesx", f"/item/{ITEM}/iiif/info.json", f"/item/{ITEM}0/"):
        with pytest.raises(Forbidden, match="covers"):
            signing.check_path(grant, outside)


def test_every_route_of_an_item_maps_under_its_prefix() -> None:
    item = f"/item/{ITEM}"
    assert signing.scope_path(f"{item}/tiles", ITEM, False) == f"{item}/tiles"
    assert signing.scope_path(f"/api/v1{item}/tiles/zxy/0/0/0", ITEM, False) == (
        f"{item}/tiles/zxy/0/0/0"
    )
    assert signing.scope_path(f"/iiif/{ITEM}/info.json", ITEM, False) == f"{item}/iiif/info.json"
    assert signing.scope_path(f"/viewer/{ITEM}", ITEM, False) == f"{item}/viewer"
    # Management is never under an item's grant.
    assert signing.scope_path(f"{item}/tiles/precache", ITEM, True) == (
        f"/manage{item}/tiles/precache"
    )
    assert signing.scope_path("/sources", None, True) == "/manage/sources"


def test_public_paths_of_prefixes() -> None:
    assert signing.public_path(f"/item/{ITEM}/") == f"/viewer/{ITEM}"
    assert signing.public_path(f"/item/{ITEM}/tiles/") == f"/item/{ITEM}/tiles"
    assert signing.public_path(f"/item/{ITEM}/iiif/") == f"/iiif/{ITEM}/info.json"
    assert signing.public_path("/manage/sources/") == "/sources"
    assert signing.public_path("/manage/") == "/"


@pytest.mark.parametrize(
    ("path", "raw", "safe"),
    [
        (f"/item/{ITEM}/tiles", f"/item/{ITEM}/tiles", True),
        ("/item/a/../b/tiles", "/item/a/../b/tiles", False),
        ("/item/a/../b/tiles", "/item/a/%2e%2e/b/tiles", False),
        ("/item/a/b/tiles", "/item/a%2Fb/tiles", False),
        ("/item/a//tiles", "/item/a//tiles", False),
        ("/item/a\\b/tiles", "/item/a%5Cb/tiles", False),
        ("/item/a%2Fb/tiles", "/item/a%252Fb/tiles", False),
    ],
)
def test_request_paths_with_segment_tricks_are_unsafe(path: str, raw: str, safe: bool) -> None:
    assert signing.safe_request_path(path, raw) is safe


@pytest.mark.parametrize(
    "text",
    [
        "k1",
        "k1:short",
        "k1:old-secret-0123456789,k1:other-secret-0123456",
        "bad id:0123456789abcdefg",
    ],
)
def test_malformed_keys_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError, match="TILECAST_SIGNING_KEYS"):
        signing.parse_keys(text)


def test_signed_mode_needs_keys() -> None:
    with pytest.raises(ConfigurationError, match="SIGNING_KEYS"):
        Settings.from_env({"TILECAST_ACCESS_MODE": "signed"})
    settings = Settings.from_env(
        {"TILECAST_ACCESS_MODE": "signed", "TILECAST_SIGNING_KEYS": "k1:old-secret-0123456789"}
    )
    assert settings.access_mode == "signed"
