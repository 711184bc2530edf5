"""The plugin's Girder settings: keys, validators, defaults, and one typed read."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from girder.exceptions import ValidationException
from girder.models.setting import Setting
from girder.utility import setting_utilities

from .rules import DEFAULT_LEVELS, normalize_levels, parse_bool

URL = "tilecast.url"
SECRET = "tilecast.secret"
LEVELS = "tilecast.levels"
PRECACHE_ON_IMPORT = "tilecast.precache_on_import"


@dataclass(frozen=True)
class TilecastSettings:
    url: str
    secret: str
    levels: str
    precache_on_import: bool


def current() -> TilecastSettings:
    setting = Setting()
    return TilecastSettings(
        url=str(setting.get(URL) or "").rstrip("/"),
        secret=str(setting.get(SECRET) or ""),
        levels=str(setting.get(LEVELS) or DEFAULT_LEVELS),
        precache_on_import=bool(setting.get(PRECACHE_ON_IMPORT)),
    )


def _validate_url(doc: dict) -> None:
    value = str(doc.get("value") or "").strip()
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationException(
                "tilecast.url must be an http(s) URL such as http://tilecast:8080, "
                "or empty to turn the plugin off",
                "value",
            )
    doc["value"] = value.rstrip("/")


def _validate_secret(doc: dict) -> None:
    doc["value"] = str(doc.get("value") or "")


def _validate_levels(doc: dict) -> None:
    try:
        doc["value"] = normalize_levels(str(doc.get("value")))
    except ValueError as exc:
        raise ValidationException(str(exc), "value") from None


def _validate_precache_on_import(doc: dict) -> None:
    try:
        doc["value"] = parse_bool(doc.get("value"))
    except ValueError as exc:
        raise ValidationException(f"tilecast.precache_on_import: {exc}", "value") from None


def register() -> None:
    setting_utilities.registerValidator(URL, _validate_url)
    setting_utilities.registerValidator(SECRET, _validate_secret)
    setting_utilities.registerValidator(LEVELS, _validate_levels)
    setting_utilities.registerValidator(PRECACHE_ON_IMPORT, _validate_precache_on_import)
    setting_utilities.registerDefaultFunction(URL, lambda: "")
    setting_utilities.registerDefaultFunction(SECRET, lambda: "")
    setting_utilities.registerDefaultFunction(LEVELS, lambda: DEFAULT_LEVELS)
    setting_utilities.registerDefaultFunction(PRECACHE_ON_IMPORT, lambda: False)
