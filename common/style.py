"""The style language at the edge: parse, bound, validate, canonicalize, hash.

The api validates a style here (no numpy needed) so malformed styles are a 400 before
any task is sent; workers compile the same canonical JSON into pixel operations
(``workers/style.py``). Equivalent styles (key order, spacing) share one canonical
form and so one cache key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from common.errors import BadRequest

NO_STYLE = "none"
MAX_DEPTH = 6
MAX_BANDS_ENTRIES = 64
STYLE_KEYS = frozenset({"band", "min", "max", "palette"})
BAND_NAMES = frozenset({"red", "green", "blue", "alpha", "gray", "grey"})

# CSS level 1 colours plus a few common names; hex and rgb()/rgba() cover the rest.
NAMED_COLORS: dict[str, tuple[int, int, int, int]] = {
    "black": (0, 0, 0, 255),
    "white": (255, 255, 255, 255),
    "red": (255, 0, 0, 255),
    "lime": (0, 255, 0, 255),
    "green": (0, 128, 0, 255),
    "blue": (0, 0, 255, 255),
    "yellow": (255, 255, 0, 255),
    "cyan": (0, 255, 255, 255),
    "aqua": (0, 255, 255, 255),
    "magenta": (255, 0, 255, 255),
    "fuchsia": (255, 0, 255, 255),
    "silver": (192, 192, 192, 255),
    "gray": (128, 128, 128, 255),
    "grey": (128, 128, 128, 255),
    "maroon": (128, 0, 0, 255),
    "olive": (128, 128, 0, 255),
    "purple": (128, 0, 128, 255),
    "teal": (0, 128, 128, 255),
    "navy": (0, 0, 128, 255),
    "orange": (255, 165, 0, 255),
    "transparent": (0, 0, 0, 0),
}
_RGB_FUNC = re.compile(r"^rgba?\(\s*([^)]*)\)$")


def parse_color(text: str) -> tuple[int, int, int, int]:
    """An RGBA tuple from ``#rgb``, ``#rgba``, ``#rrggbb``, ``#rrggbbaa``, ``rgb()``,
    ``rgba()`` or a named colour. Raises ``ValueError`` when it is none of these."""
    value = text.strip().lower()
    if value in NAMED_COLORS:
        return NAMED_COLORS[value]
    if value.startswith("#") and len(value) in (4, 5, 7, 9):
        digits = value[1:]
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        channels = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
        return (channels[0], channels[1], channels[2], channels[3] if len(channels) == 4 else 255)
    match = _RGB_FUNC.match(value)
    if match:
        parts = [p.strip() for p in match.group(1).split(",")]
        if len(parts) in (3, 4):
            rgb = [int(float(p)) for p in parts[:3]]
            alpha = 255 if len(parts) == 3 else round(float(parts[3]) * 255)
            if all(0 <= c <= 255 for c in [*rgb, alpha]):
                return (rgb[0], rgb[1], rgb[2], alpha)
    raise ValueError(f"not a colour: {text!r}")


def canonical_style(text: str | None, *, max_bytes: int) -> str | None:
    """The canonical JSON of a style query parameter, or None for no style."""
    if text is None or text.strip() in ("", "{}", "null"):
        return None
    if len(text.encode()) > max_bytes:
        raise BadRequest(f"style is longer than {max_bytes} bytes", parameter="style")
    try:
        style = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"style is not valid JSON: {exc}", parameter="style") from None
    _check_depth(style, 0)
    if not isinstance(style, dict):
        raise BadRequest("style must be a JSON object", parameter="style")
    _validate_style(style)
    return json.dumps(style, sort_keys=True, separators=(",", ":"))


def style_hash(canonical: str | None) -> str:
    if canonical is None:
        return NO_STYLE
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"style is nested deeper than {MAX_DEPTH} levels", parameter="style")
    if isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _validate_style(style: dict[str, Any]) -> None:
    if "bands" in style:
        bands = style["bands"]
        if not isinstance(bands, list) or not bands or len(bands) > MAX_BANDS_ENTRIES:
            raise BadRequest(
                f"style.bands must be a list of 1 to {MAX_BANDS_ENTRIES} objects",
                parameter="style",
            )
        for entry in bands:
            if not isinstance(entry, dict):
                raise BadRequest("each entry of style.bands must be an object", parameter="style")
            _validate_entry(entry, "style.bands[]")
        extra = set(style) - {"bands"}
        if extra:
            raise BadRequest(
                f"unknown style keys beside bands: {', '.join(sorted(extra))}", parameter="style"
            )
        return
    _validate_entry(style, "style")


def _validate_entry(entry: dict[str, Any], where: str) -> None:
    unknown = set(entry) - STYLE_KEYS
    if unknown:
        raise BadRequest(
            f"unknown {where} keys: {', '.join(sorted(unknown))}; "
            f"supported: {', '.join(sorted(STYLE_KEYS | {'bands'}))}",
            parameter="style",
        )
    if "band" in entry and not _is_band(entry["band"]):
        raise BadRequest(
            f"{where}.band must be a 1-based band number, -1, or one of "
            f"{', '.join(sorted(BAND_NAMES))}",
            parameter="style",
        )
    for name in ("min", "max"):
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"{where}.{name} must be a number", parameter="style")
    if "palette" in entry:
        _validate_palette(entry["palette"], where)


def _is_band(band: Any) -> bool:
    if band is None:
        return True
    if isinstance(band, bool):
        return False
    if isinstance(band, int):
        return band == -1 or band >= 1
    return band in BAND_NAMES


def _validate_palette(palette: Any, where: str) -> None:
    colors = palette if isinstance(palette, list) else [palette]
    if not colors or len(colors) > 256:
        raise BadRequest(f"{where}.palette must hold 1 to 256 colours", parameter="style")
    for color in colors:
        if not isinstance(color, str):
            raise BadRequest(f"{where}.palette entries must be colour strings", parameter="style")
        try:
            parse_color(color)
        except ValueError:
            raise BadRequest(
                f"{where}.palette: {color!r} is not a colour", parameter="style"
            ) from None
