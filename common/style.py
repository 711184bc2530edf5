"""The style language at the edge: parse, bound, validate, canonicalize, hash.

The api validates a style here (no numpy, no PIL) so a malformed style is a 400
naming ``style`` before any task is sent; workers compile the same canonical JSON
into pixel operations (``workers/style.py``). Equivalent styles (key order,
spacing) share one canonical form and so one cache key.

The language is large_image's (``TileSource.__init__``'s docstring and
``_applyStyle``): a style is one entry, or ``{"bands": [entry, ...]}`` whose entries
are composited in order (``dtype`` and ``axis`` may sit beside ``bands``). Entry keys:

``band``       1-based index, -1, or ``red green blue alpha gray grey``
``frame``      a frame index (>= 0) to read this entry from
``framedelta`` an offset from the requested frame (used when ``frame`` is absent)
``min/max``    a number (or numeric string), ``auto``, ``min``, ``max``, ``full``, or
               ``min:T`` / ``max:T`` / ``auto:T`` with a histogram threshold T in [0, 1]
``palette``    a colour, a palette name (palettable's dotted names, matplotlib's
               colormaps and colour names), or a list of colours / [r, g, b(, a)] on 0-1
``scheme``     ``linear`` or ``discrete``
``nodata``     a number (or numeric string) to leave transparent
``composite``  ``lighten`` or ``multiply``
``clamp``      true or false
``dtype``      ``uint8``, ``uint16``, ``float``, ``source``
``axis``       an output channel to keep

Where large_image silently falls back (an unknown band name uses the default band,
an unparsable min becomes ``auto``, an unknown ``scheme`` is linear), tilecast
answers 400: those are typing mistakes a viewer's user should see. Style
``function`` hooks (large_image imports and runs any named Python function) and
``icc`` are not supported.

Palette names are checked here against ``common/palette_names.txt`` (package data): every name the
workers' colormap packages (palettable, matplotlib) resolve, generated from them by
``python -m tilecast.workers.palettes`` and compared with them by a unit test, so an unknown
name is a 400 before any task is sent. The worker resolves names with the packages
themselves and stays the authority: a name in the list it cannot resolve (a package
older than the list) is a 400 naming ``style`` too, through the render's completion.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from importlib import resources
from typing import Any

from tilecast.common.colors import is_color
from tilecast.common.errors import BadRequest
from tilecast.common.params import loads_json

NO_STYLE = "none"
MAX_DEPTH = 6
MAX_BANDS_ENTRIES = 64
MAX_PALETTE_COLORS = 1024
MAX_FRAME = 10**7
ENTRY_KEYS = frozenset(
    {
        "band",
        "frame",
        "framedelta",
        "min",
        "max",
        "palette",
        "scheme",
        "nodata",
        "composite",
        "clamp",
        "dtype",
        "axis",
    }
)
# Keys allowed beside ``bands`` (large_image reads them from the base object).
BANDS_KEYS = frozenset({"bands", "dtype", "axis"})
BAND_NAMES = frozenset({"red", "green", "blue", "alpha", "gray", "grey"})
RANGE_WORDS = frozenset({"auto", "min", "max", "full"})
THRESHOLD_WORDS = frozenset({"auto", "min", "max"})
SCHEMES = frozenset({"linear", "discrete"})
COMPOSITES = frozenset({"lighten", "multiply"})
DTYPES = frozenset({"uint8", "uint16", "float", "source"})
# matplotlib's other colour forms, accepted in palette lists: colour-cycle references
# and grey levels ("0.5").
_CYCLE_COLOR = re.compile(r"C[0-9]{1,2}$")


def canonical_style(text: str | None, *, max_bytes: int) -> str | None:
    """The canonical JSON of a style query parameter, or None for no style."""
    if text is None or text.strip() in ("", "{}", "null"):
        return None
    if len(text.encode()) > max_bytes:
        raise BadRequest(f"style is longer than {max_bytes} bytes", parameter="style")
    try:
        style = loads_json(text, "style", max_depth=MAX_DEPTH + 1, parse_constant=_no_constant)
    except ValueError as exc:
        raise BadRequest(f"style is not valid JSON: {exc}", parameter="style") from None
    _check_depth(style, 0)
    if not isinstance(style, dict):
        raise BadRequest("style must be a JSON object", parameter="style")
    validate_style(style)
    return json.dumps(style, sort_keys=True, separators=(",", ":"))


def style_hash(canonical: str | None) -> str:
    if canonical is None:
        return NO_STYLE
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def style_entries(style: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a (validated) style: its ``bands`` list, or the style itself."""
    return list(style["bands"]) if "bands" in style else [style]


def style_frames(canonical: str | None, frame: int) -> set[int]:
    """Every frame a style applied to ``frame`` reads (large_image's rule: an entry
    with neither ``frame`` nor a non-zero ``framedelta`` reads ``frame``)."""
    if canonical is None:
        return {frame}
    return {entry_frame(entry, frame) for entry in style_entries(json.loads(canonical))}


def entry_frame(entry: dict[str, Any], frame: int) -> int:
    if entry.get("frame") is not None:
        return int(entry["frame"])
    return frame + int(entry.get("framedelta") or 0)


def validate_style(style: dict[str, Any]) -> None:
    if "bands" in style:
        bands = style["bands"]
        if not isinstance(bands, list) or not bands or len(bands) > MAX_BANDS_ENTRIES:
            raise _bad(f"style.bands must be a list of 1 to {MAX_BANDS_ENTRIES} objects")
        extra = set(style) - BANDS_KEYS
        if extra:
            raise _bad(
                f"unknown style keys beside bands: {', '.join(sorted(extra))} "
                f"(allowed: {', '.join(sorted(BANDS_KEYS))})"
            )
        _validate_output(style, "style")
        for index, entry in enumerate(bands):
            if not isinstance(entry, dict):
                raise _bad("each entry of style.bands must be an object")
            _validate_entry(entry, f"style.bands[{index}]")
        return
    _validate_entry(style, "style")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _bad(message: str) -> BadRequest:
    return BadRequest(message, parameter="style")


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _bad(f"style is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numeric_string(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _validate_entry(entry: dict[str, Any], where: str) -> None:
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise _bad(
            f"unknown {where} keys: {', '.join(sorted(unknown))}; "
            f"supported: {', '.join(sorted(ENTRY_KEYS | {'bands'}))}"
        )
    band = entry.get("band")
    if band is not None and not (
        (_is_int(band) and (band == -1 or 1 <= band <= 4096)) or band in BAND_NAMES
    ):
        raise _bad(
            f"{where}.band must be a 1-based band number, -1, or one of "
            f"{', '.join(sorted(BAND_NAMES))}; not {band!r}"
        )
    frame = entry.get("frame")
    if frame is not None and not (_is_int(frame) and 0 <= frame <= MAX_FRAME):
        raise _bad(f"{where}.frame must be a frame number (0 or more), not {frame!r}")
    delta = entry.get("framedelta")
    if delta is not None and not (_is_int(delta) and -MAX_FRAME <= delta <= MAX_FRAME):
        raise _bad(f"{where}.framedelta must be an integer, not {delta!r}")
    for name in ("min", "max"):
        if name in entry:
            _validate_range_value(entry[name], f"{where}.{name}")
    if "palette" in entry:
        _validate_palette(entry["palette"], where)
    _validate_choice(entry, "scheme", SCHEMES, where)
    _validate_choice(entry, "composite", COMPOSITES, where)
    nodata = entry.get("nodata")
    if nodata is not None and not (_is_number(nodata) or _numeric_string(nodata)):
        raise _bad(f"{where}.nodata must be a number or null, not {nodata!r}")
    if "clamp" in entry and not isinstance(entry["clamp"], bool):
        raise _bad(f"{where}.clamp must be true or false")
    _validate_output(entry, where)


def _validate_output(style: dict[str, Any], where: str) -> None:
    _validate_choice(style, "dtype", DTYPES, where)
    axis = style.get("axis")
    if axis is not None and not (_is_int(axis) and -4096 <= axis <= 4096):
        raise _bad(f"{where}.axis must be an integer (an output channel), not {axis!r}")


def _validate_choice(entry: dict[str, Any], key: str, allowed: frozenset[str], where: str) -> None:
    value = entry.get(key)
    if value is not None and value not in allowed:
        raise _bad(f"{where}.{key} must be one of {', '.join(sorted(allowed))}, not {value!r}")


def _validate_range_value(value: Any, where: str) -> None:
    if _is_number(value) or _numeric_string(value) or value in RANGE_WORDS:
        return
    if isinstance(value, str) and ":" in value:
        word, _, threshold = value.partition(":")
        if word in THRESHOLD_WORDS and _numeric_string(threshold):
            if 0 <= float(threshold) <= 1:
                return
            raise _bad(f"{where}: the threshold of {value!r} must be between 0 and 1")
    raise _bad(
        f"{where} must be a number, auto, min, max, full, or min:T / max:T / auto:T "
        f"with T in [0, 1]; not {value!r}"
    )


@functools.cache
def palette_names() -> frozenset[str]:
    """The ~4,500 palette names the workers resolve, read on first use."""
    text = resources.files("tilecast.common").joinpath("palette_names.txt").read_text("utf-8")
    return frozenset(text.splitlines()) - {""}


def _is_palette_name(text: str) -> bool:
    return text in palette_names()


def _is_list_color(text: str) -> bool:
    """A palette list entry: a colour, a matplotlib colour name or other colour form."""
    if is_color(text) or _is_palette_name(text) or _CYCLE_COLOR.match(text):
        return True
    return _numeric_string(text) and 0 <= float(text) <= 1


def _validate_palette(palette: Any, where: str) -> None:
    if isinstance(palette, str):
        if not (is_color(palette) or _is_palette_name(palette)):
            raise _bad(
                f"{where}.palette: {palette!r} is neither a colour nor a known palette name "
                "(palettable's dotted names, matplotlib's colormaps and colour names)"
            )
        return
    if not isinstance(palette, list) or not 1 <= len(palette) <= MAX_PALETTE_COLORS:
        raise _bad(
            f"{where}.palette must be a colour, a palette name, or a list of 1 to "
            f"{MAX_PALETTE_COLORS} colours"
        )
    for color in palette:
        if isinstance(color, list):
            if not (3 <= len(color) <= 4 and all(_is_number(v) and 0 <= v <= 1 for v in color)):
                raise _bad(
                    f"{where}.palette: a colour given as a list must hold 3 or 4 numbers "
                    f"between 0 and 1, not {color!r}"
                )
        elif not isinstance(color, str) or not _is_list_color(color):
            raise _bad(f"{where}.palette: {color!r} is not a colour")
