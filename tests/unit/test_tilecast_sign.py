"""``tilecast sign`` prints only URLs the server can accept: an expiry the server would
refuse (not in the future, or past the largest Unix time it reads) is one line and exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

from tilecast.cli import main
from tilecast.common import signing
from tilecast.common.errors import BadRequest, Forbidden
from tilecast.common.settings import Settings, get_settings
from tilecast.sign import signed_url

KEYS = "k1:0123456789abcdef-secret"
ITEM = "0123456789abcdef01234567"
NOW = 1_800_000_000


@pytest.fixture
def signing_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("TILECAST_ACCESS_MODE", "TILECAST_SIGNING_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TILECAST_ACCESS_MODE", "signed")
    monkeypatch.setenv("TILECAST_SIGNING_KEYS", KEYS)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("seconds", ["0", "-60", str(10**13)])
def test_an_expiry_the_server_would_refuse_is_one_line_and_exit_2(
    signing_env: None, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    code, out, err = run(["sign", ITEM, "--expires-in", seconds], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"tilecast sign: --expires-in {seconds}: give")


def test_a_usable_expiry_prints_a_url(
    signing_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["sign", ITEM, "--expires-in", "600"], capsys)
    assert code == 0 and err == ""
    query = dict(parse_qsl(urlsplit(out.strip()).query))
    grant = signing.verify(query, signing.parse_keys(KEYS))
    assert grant.prefix == f"/item/{ITEM}/"


def test_the_latest_expiry_the_server_reads_is_the_bound() -> None:
    settings = Settings(access_mode="signed", signing_keys=KEYS).resolved()
    keys = signing.parse_keys(KEYS)

    def args(seconds: int) -> argparse.Namespace:
        return argparse.Namespace(
            item_id=ITEM, prefix=None, expires_in=seconds, url="", in_path=False
        )

    latest = signed_url(args(signing.MAX_EXPIRES - NOW), settings, now=NOW)
    query = dict(parse_qsl(urlsplit(latest).query))
    assert int(query["expires"]) == signing.MAX_EXPIRES
    assert signing.verify(query, keys, now=NOW).expires == signing.MAX_EXPIRES
    with pytest.raises(BadRequest, match=f"at most {signing.MAX_EXPIRES - NOW} seconds"):
        signed_url(args(signing.MAX_EXPIRES - NOW + 1), settings, now=NOW)
    # What the CLI now refuses, the server refuses too.
    past = {**query, "expires": str(signing.MAX_EXPIRES + 1)}
    with pytest.raises(Forbidden, match="Unix seconds"):
        signing.verify(past, keys, now=NOW)


def test_sign_itself_refuses_expiries_no_server_reads() -> None:
    keys = signing.parse_keys(KEYS)
    for expires in (-1, signing.MAX_EXPIRES + 1):
        with pytest.raises(ValueError, match="Unix seconds"):
            signing.sign("/item/a/", expires, keys)


def test_signing_keys_without_a_mode_stop_the_cli_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TILECAST_ACCESS_MODE", raising=False)
    monkeypatch.setenv("TILECAST_SIGNING_KEYS", KEYS)
    get_settings.cache_clear()
    try:
        code, out, err = run(["sign", ITEM], capsys)
    finally:
        get_settings.cache_clear()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "set TILECAST_ACCESS_MODE=signed" in err
