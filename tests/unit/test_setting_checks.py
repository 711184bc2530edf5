"""Settings that cannot be used are refused when read, with one line naming the fix:
unknown ``TILECAST_*`` names (with the nearest real one), values outside what a setting
accepts, and signing keys on a server whose access mode was left to its open default."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tilecast.common.errors import ConfigurationError
from tilecast.common.setting_checks import CHECKS
from tilecast.common.settings import TEST_PREFIX, Settings

KEYS = "k1:0123456789abcdef-secret"


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    message = caught.value.message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("TILECAST_ACCES", "TILECAST_ACCESS_MODE"),
        ("TILECAST_ACCESS", "TILECAST_ACCESS_MODE"),
        ("TILECAST_SIGNING_KEY", "TILECAST_SIGNING_KEYS"),
        ("TILECAST_SOURCE_ROOT", "TILECAST_SOURCE_ROOTS"),
        ("TILECAST_CACHEURL", "TILECAST_CACHE_URL"),
        ("TILECAST_CORS_ORIGIN", "TILECAST_CORS_ORIGINS"),
    ],
)
def test_an_unknown_name_is_refused_with_the_nearest_setting(typo: str, meant: str) -> None:
    message = refusal({typo: "signed"})
    assert message == f"{typo} is not a tilecast setting: did you mean {meant}?"


def test_an_unknown_name_far_from_any_setting_points_to_the_table() -> None:
    assert "README" in refusal({"TILECAST_ZZZ": "1"})


def test_an_unknown_name_is_refused_even_when_empty() -> None:
    assert "TILECAST_ACCESS_MODE" in refusal({"TILECAST_ACCES": ""})


def test_the_test_prefix_and_other_variables_are_not_settings() -> None:
    env = {TEST_PREFIX + "MONGO_URI": "mongodb://x", "PATH": "/bin", "TILECASTX": "1"}
    assert Settings.from_env(env) == Settings().resolved()


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [
        ("TILECAST_RENDER_TIMEOUT", "0", "> 0"),
        ("TILECAST_RENDER_TIMEOUT", "nan", "> 0"),
        ("TILECAST_RENDER_TIMEOUT", "soon", "a number"),
        ("TILECAST_INFLIGHT_TTL", "-1", "> 0"),
        ("TILECAST_TILE_TTL", "-5", ">= 0"),
        ("TILECAST_JOB_BLOCK", "1.5", "a whole number"),
        ("TILECAST_JOB_BLOCK", "0", ">= 1"),
        ("TILECAST_JPEG_QUALITY", "101", "from 1 to 100"),
        ("TILECAST_BULK_NICE", "-5", "from 0 to 19"),
        ("TILECAST_KEEPER_HIGH_WATER", "1.5", "fraction"),
        ("TILECAST_PREFETCH", "2", "0 (off) or 1 (on)"),
        ("TILECAST_AUTO_PRECACHE", "yes", "a whole number"),
        ("TILECAST_MAX_BODY_BYTES", "0", ">= 1"),
        ("TILECAST_RATE_LIMIT", "inf", ">= 0"),
        ("TILECAST_LOG_LEVEL", "loud", "one of DEBUG, INFO"),
        ("TILECAST_LOG_FORMAT", "xml", "one of text, json"),
        ("TILECAST_ACCESS_MODE", "opne", "one of open, girder, signed"),
        ("TILECAST_CACHE_URL", "localhost:6379", "redis://"),
        ("TILECAST_STATE_URL", "http://state/", "redis://"),
        ("TILECAST_BROKER_URL", "rabbitmq", "a URL"),
        ("TILECAST_SOURCE_ROOTS", "images", "absolute directories"),
        ("TILECAST_TRUSTED_PROXIES", "10.0.0.0/33", "networks"),
        ("TILECAST_CORS_ORIGINS", "viewer.example", "origins"),
        ("TILECAST_CORS_MANAGE_ORIGINS", "*", "not *"),
        ("TILECAST_CORS_MANAGE_ORIGINS", "https://a.example/path", "origins"),
        ("TILECAST_GIRDER_URL", "girder:8080/api/v1", "http://"),
        ("TILECAST_GIRDER_PATH_MAP", "/assetstore", "GIRDER_PATH=LOCAL_PATH"),
        ("TILECAST_GIRDER_DOWNLOAD_DIR", "downloads", "absolute directory"),
        ("TILECAST_GIRDER_TIMEOUT", "0", "> 0"),
        ("TILECAST_SIGNING_KEYS", "short:secret", "shorter than 16 bytes"),
    ],
)
def test_an_invalid_value_is_refused_naming_what_is_accepted(
    name: str, value: str, accepts: str
) -> None:
    env = {name: value}
    if name == "TILECAST_SIGNING_KEYS":
        env["TILECAST_ACCESS_MODE"] = "signed"
    message = refusal(env)
    assert message.startswith(name) and accepts in message


def test_a_refused_url_does_not_show_its_password() -> None:
    message = refusal({"TILECAST_CACHE_URL": "http://user:hunter2@redis:6379/0"})
    assert "hunter2" not in message and "TILECAST_CACHE_URL" in message


def test_the_keeper_deletes_down_to_below_where_it_starts() -> None:
    message = refusal({"TILECAST_KEEPER_LOW_WATER": "0.95"})
    assert "TILECAST_KEEPER_HIGH_WATER" in message


def test_valid_values_pass() -> None:
    settings = Settings.from_env(
        {
            "TILECAST_CACHE_URL": "rediss://:pw@cache:6380/1",
            "TILECAST_BROKER_URL": "amqp://u:p@rabbitmq:5672/vhost",
            "TILECAST_SOURCE_ROOTS": "/a:/b",
            "TILECAST_LOG_LEVEL": "debug",
            "TILECAST_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "TILECAST_CORS_ORIGINS": "https://viewer.example, http://127.0.0.1:3000/",
            "TILECAST_CORS_MANAGE_ORIGINS": "https://admin.example",
            "TILECAST_GIRDER_PATH_MAP": "/girder/assetstore=/mnt/store",
            "TILECAST_KEEPER_INTERVAL": "0",
            "TILECAST_BULK_NICE": "0",
        }
    )
    assert settings.cors_manage_origins == "https://admin.example"


def test_every_setting_has_a_check_and_its_default_passes_it() -> None:
    names = {f.name for f in fields(Settings)}
    assert names <= set(CHECKS), f"no check for {sorted(names - set(CHECKS))}"
    assert set(CHECKS) <= names, f"checks of no setting: {sorted(set(CHECKS) - names)}"
    defaults = Settings()
    for name, check in CHECKS.items():
        assert check(getattr(defaults, name)) is None, name


def test_signing_keys_without_an_access_mode_are_refused() -> None:
    message = refusal({"TILECAST_SIGNING_KEYS": KEYS})
    assert "TILECAST_ACCESS_MODE=signed" in message and "=open" in message
    # Given explicitly, either mode is the operator's choice.
    signed = Settings.from_env({"TILECAST_SIGNING_KEYS": KEYS, "TILECAST_ACCESS_MODE": "signed"})
    assert signed.access_mode == "signed"
    opened = Settings.from_env({"TILECAST_SIGNING_KEYS": KEYS, "TILECAST_ACCESS_MODE": "open"})
    assert opened.access_mode == "open" and opened.signing_keys == KEYS
