"""The description of a composed image: large_image's ``multi`` source format (a JSON or
YAML document whose top level holds a ``sources`` list), parsed and checked.

Every refusal is an ``UnsupportedImage`` whose message names the bad entry the way the
description spells it (``sources[3].position.scale must be > 0``) and never a path of
the server's. What is checked is large_image's ``MultiSourceSchema`` (the keys tilecast
does not support are refused by name, not ignored: they would change pixels) plus the
bounds a hostile description must not cross: its size, its number of sources, the
number of values in it (YAML aliases can multiply them), finite numbers.

workers/sources/composedframes.py places the entries into frames, and
workers/sources/composed.py opens the parts and composes tiles from them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tilecast.common.errors import UnsupportedImage

MAX_DESCRIPTION_BYTES = 1 << 20  # a description is text; a larger file is no description
MAX_SOURCES = 1024  # entries in ``sources``
MAX_VALUES = 200_000  # values walked in a parsed description, aliases counted each time
MAX_AXES = 8  # extra axes beyond c, z, t, xy
MAX_SIDE = 1 << 31  # width, height and positions: far beyond any image, within int64 math
DEFAULT_AXES = ("c", "z", "t", "xy")
DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
AXIS_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
RESERVED_AXES = frozenset({"x", "y", "s", "frame"})  # large_image's advice, and our keys

TOP_KEYS = frozenset(
    {
        "name", "description", "width", "height", "tileWidth", "tileHeight", "channels",
        "scale", "backgroundColor", "basePath", "uniformSources", "dtype", "singleBand",
        "axes", "sources",
    }
)  # fmt: skip
POSITION_KEYS = frozenset({"x", "y", "scale", "s11", "s12", "s21", "s22", "crop", "warp"})
CROP_KEYS = ("left", "top", "right", "bottom")
# Keys of large_image's schema that tilecast refuses, and why (the message's tail).
UNSUPPORTED_ENTRY_KEYS = {
    "pathPattern": "list the files one entry each",
    "sampleScale": "parts are composed with their own sample values",
    "sampleOffset": "parts are composed with their own sample values",
    "style": "parts are composed unstyled; style the composed image instead",
    "params": "parts are opened by their content, without reader parameters",
}


@dataclass(frozen=True)
class Position:
    """Where an entry's part lands: ``matrix`` maps the part's full-resolution pixel
    coordinates onto the composed image's (large_image's ``_sourceBoundingBox``), and
    ``crop`` (left, top, right, bottom, each None for the part's own edge) keeps a
    rectangle of the part."""

    x: float = 0.0
    y: float = 0.0
    scale: float = 1.0
    s11: float = 1.0
    s12: float = 0.0
    s21: float = 0.0
    s22: float = 1.0
    crop: tuple[int | None, int | None, int | None, int | None] | None = None

    @property
    def matrix(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        return (
            (self.s11 * self.scale, self.s12 * self.scale, self.x),
            (self.s21 * self.scale, self.s22 * self.scale, self.y),
        )


@dataclass(frozen=True)
class Entry:
    """One item of ``sources``: its part's path as written, where it lands, and its
    axis settings (``z``, ``zSet``, ``zValues``, ``channel``, ``frames``, ...) as
    validated, for the frame placement."""

    index: int
    path: str
    position: Position
    settings: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"sources[{self.index}]"


@dataclass(frozen=True)
class Description:
    entries: tuple[Entry, ...]
    axes: tuple[str, ...]
    width: int | None = None
    height: int | None = None
    tile_width: int | None = None
    tile_height: int | None = None
    channels: tuple[str, ...] = ()
    mm_x: float | None = None
    mm_y: float | None = None
    magnification: int | None = None
    background: tuple[float, ...] | None = None
    base_path: str = "."
    dtype: str | None = None
    single_band: bool = False


def refuse(message: str) -> UnsupportedImage:
    return UnsupportedImage(message)


# -- text -> a document -----------------------------------------------------------------------
def load(data: bytes) -> Any:
    """The parsed JSON or YAML document (JSON tried first, as large_image does).
    UnsupportedImage when it is neither, or holds more values than are walked."""
    if len(data) > MAX_DESCRIPTION_BYTES:
        raise refuse(
            f"the description is {len(data)} bytes; at most {MAX_DESCRIPTION_BYTES} are read"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refuse("the description is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise refuse("the description is nested too deeply") from None
    except ValueError:
        document = _load_yaml(text)
    _count_values(document)
    return document


def _load_yaml(text: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except RecursionError:
        raise refuse("the description is nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise refuse(f"the description is neither JSON nor YAML: {exc.problem}{where}") from None
    except yaml.YAMLError:
        raise refuse("the description is neither JSON nor YAML") from None


def _count_values(document: Any) -> None:
    """Refuse a document with more than MAX_VALUES values: YAML aliases share one object
    among many places (a few lines can stand for billions of values), and everything
    after this walks the document."""
    pending, seen = [document], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise refuse(f"the description holds more than {MAX_VALUES} values")
        if isinstance(value, Mapping):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def is_description(document: Any) -> bool:
    """Whether a parsed document is a description at all (a mapping with a ``sources``
    list); any other JSON or YAML is some other file's."""
    return isinstance(document, Mapping) and isinstance(document.get("sources"), list)


# -- a document -> a Description ----------------------------------------------------------------
def describe(document: Mapping[str, Any]) -> Description:
    """The validated description; UnsupportedImage naming the first bad entry."""
    for key in document:
        if key not in TOP_KEYS:
            raise refuse(f"unknown key {_shown(key)} at the top level")
    axes = _axes(document.get("axes"))
    sources = document["sources"]
    if not sources:
        raise refuse("sources is empty")
    if len(sources) > MAX_SOURCES:
        raise refuse(f"sources has {len(sources)} entries; at most {MAX_SOURCES} are composed")
    entries = tuple(_entry(index, item, axes) for index, item in enumerate(sources))
    scale = _mapping(document.get("scale", {}), "scale")
    for key in scale:
        if key not in ("mm_x", "mm_y", "magnification"):
            raise refuse(f"unknown key {_shown(key)} in scale")
    dtype = document.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise refuse(f"dtype must be one of {', '.join(DTYPES)}")
    background = document.get("backgroundColor")
    return Description(
        entries=entries,
        axes=axes,
        width=_positive_int(document, "width", ""),
        height=_positive_int(document, "height", ""),
        tile_width=_positive_int(document, "tileWidth", ""),
        tile_height=_positive_int(document, "tileHeight", ""),
        channels=_strings(document.get("channels"), "channels"),
        mm_x=_positive_number(scale, "mm_x", "scale."),
        mm_y=_positive_number(scale, "mm_y", "scale."),
        magnification=_positive_int(scale, "magnification", "scale."),
        background=None if background is None else _numbers(background, "backgroundColor"),
        base_path=_string(document, "basePath", "") or ".",
        dtype=dtype,
        single_band=_boolean(document, "singleBand", ""),
    )


def _axes(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_AXES
    names = _strings(value, "axes", allow_empty=True)
    extra: list[str] = []
    for number, name in enumerate(names):
        if name in DEFAULT_AXES or name in extra:
            continue
        if not AXIS_NAME.match(name) or name in RESERVED_AXES:
            raise refuse(
                f"axes[{number}] must be a short lower-case name other than x, y, s and frame"
            )
        extra.append(name)
    if len(extra) > MAX_AXES:
        raise refuse(f"axes names {len(extra)} extra axes; at most {MAX_AXES} are composed")
    return DEFAULT_AXES + tuple(extra)


def _entry(index: int, item: Any, axes: tuple[str, ...]) -> Entry:
    label = f"sources[{index}]"
    item = _mapping(item, label)
    for key, why in UNSUPPORTED_ENTRY_KEYS.items():
        if key in item:
            raise refuse(f"{label}.{key} is not supported: {why}")
    path = item.get("path")
    if not isinstance(path, str) or not path or "\x00" in path:
        raise refuse(f"{label}.path must be a non-empty string")
    if path == "__none__":
        raise refuse(f"{label}.path __none__ (a generated test source) is not supported")
    where = f"{label}."
    settings: dict[str, Any] = {}
    for axis in ("frame", *axes):
        for key in (axis, f"{axis}Set"):
            if key in item:
                settings[key] = _count(item, key, where)
        if f"{axis}Values" in item:
            settings[f"{axis}Values"] = _numbers(item[f"{axis}Values"], where + f"{axis}Values")
        if f"{axis}Step" in item:
            _positive_int(item, f"{axis}Step", where)  # only used with pathPattern
    if "channel" in item:
        settings["channel"] = _string(item, "channel", where)
    if "channels" in item:
        settings["channels"] = _strings(item["channels"], where + "channels")
    if "frames" in item:
        frames = _list(item["frames"], where + "frames")
        for number, frame in enumerate(frames):
            if not _is_int(frame):
                raise refuse(f"{where}frames[{number}] must be an integer")
        settings["frames"] = frozenset(frames)
    if "framesAsAxes" in item:
        settings["framesAsAxes"] = _frames_as_axes(item["framesAsAxes"], where + "framesAsAxes")
    _string(item, "name", where)
    _string(item, "description", where)
    _string(item, "sourceName", where)  # tilecast picks a part's reader by its content
    return Entry(index, path, _position(item.get("position"), where + "position"), settings)


def _frames_as_axes(value: Any, label: str) -> dict[str, int]:
    strides = _mapping(value, label)
    for axis in strides:
        if axis not in DEFAULT_AXES:
            raise refuse(f"{label} may name only c, t, z and xy, not {_shown(axis)}")
        _positive_int(strides, axis, label + ".")
    return dict(strides)


def _position(value: Any, label: str) -> Position:
    if value is None:
        return Position()
    position = _mapping(value, label)
    for key in position:
        if key not in POSITION_KEYS:
            raise refuse(f"unknown key {_shown(key)} in {label}")
    if "warp" in position:
        raise refuse(f"{label}.warp is not supported: give the affine s11, s12, s21, s22")
    numbers = {key: _number(position, key, label + ".") for key in POSITION_KEYS - {"crop", "warp"}}
    given = {key: number for key, number in numbers.items() if number is not None}
    for key in ("x", "y"):
        if abs(given.get(key, 0.0)) > MAX_SIDE:
            raise refuse(f"{label}.{key} is beyond any image")
    if given.get("scale", 1.0) <= 0:
        raise refuse(f"{label}.scale must be > 0")
    placed = Position(crop=_crop(position.get("crop"), label + ".crop"), **given)
    (a, b, _), (c, d, _) = placed.matrix
    if not abs(a * d - b * c) > 1e-12:
        raise refuse(f"{label} is not invertible: s11 * s22 - s12 * s21 is 0")
    return placed


def _crop(value: Any, label: str) -> tuple[int | None, int | None, int | None, int | None] | None:
    if value is None:
        return None
    crop = _mapping(value, label)
    for key in crop:
        if key not in CROP_KEYS:
            raise refuse(f"unknown key {_shown(key)} in {label}")
    sides: list[int | None] = []
    for key in CROP_KEYS:
        side = crop.get(key)
        if side is not None and not (_is_int(side) and abs(side) <= MAX_SIDE):
            raise refuse(f"{label}.{key} must be an integer")
        sides.append(side)
    return sides[0], sides[1], sides[2], sides[3]


# -- typed values ------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= 1e300
    )


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _mapping(value: Any, label: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise refuse(f"{label} must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise refuse(f"{label} has a key that is not a string: {_shown(key)}")
    return value


def _list(value: Any, label: str) -> list[Any]:
    if not isinstance(value, list):
        raise refuse(f"{label} must be a list")
    return value


def _strings(value: Any, label: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _list(value, label)
    if not items and not allow_empty:
        raise refuse(f"{label} must not be empty")
    for number, item in enumerate(items):
        if not isinstance(item, str):
            raise refuse(f"{label}[{number}] must be a string")
    return tuple(items)


def _numbers(value: Any, label: str) -> tuple[float, ...]:
    items = _list(value, label)
    if not items:
        raise refuse(f"{label} must not be empty")
    for number, item in enumerate(items):
        if not _is_number(item):
            raise refuse(f"{label}[{number}] must be a finite number")
    return tuple(items)


def _string(mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise refuse(f"{where}{key} must be a string")
    return value


def _boolean(mapping: Mapping[str, Any], key: str, where: str) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise refuse(f"{where}{key} must be true or false")
    return value


def _number(mapping: Mapping[str, Any], key: str, where: str) -> float | None:
    value = mapping.get(key)
    if value is not None and not _is_number(value):
        raise refuse(f"{where}{key} must be a finite number")
    return value


def _positive_number(mapping: Mapping[str, Any], key: str, where: str) -> float | None:
    value = _number(mapping, key, where)
    if value is not None and value <= 0:
        raise refuse(f"{where}{key} must be > 0")
    return value


def _positive_int(mapping: Mapping[str, Any], key: str, where: str) -> int | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not _is_int(value):
        raise refuse(f"{where}{key} must be an integer")
    if not 0 < value <= MAX_SIDE:
        raise refuse(f"{where}{key} must be > 0")
    return value


def _count(mapping: Mapping[str, Any], key: str, where: str) -> int:
    value = mapping[key]
    if not _is_int(value):
        raise refuse(f"{where}{key} must be an integer")
    if not 0 <= value <= MAX_SIDE:
        raise refuse(f"{where}{key} must be >= 0")
    return value
