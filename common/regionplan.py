"""Region geometry: which pixels a region covers and which level it is read from.

Geometry is large_image's (``_getRegionBounds``, ``_calculateWidthHeight`` and the
tile iterator's level choice), so a region covers the same pixels and is read from
the same resolution:

- ``left``/``top``/``right``/``bottom``/``regionWidth``/``regionHeight`` in ``units``
  (common/regionparams.py). Negative values count from the right or bottom edge; missing
  edges default to the image's; the result is rounded to whole pixels and clipped to the
  image.
- ``width``/``height`` bound the output, keeping the aspect ratio (one alone: the other
  is at most 16x it); neither means the region's own size, or -- with ``magnification``
  / ``mm_x`` / ``mm_y`` (:class:`OutputScale`) -- that size at the level of that
  magnification or pixel size (``getLevelForMagnification`` unrounded).
- The region is read from the coarsest level whose resolution is at least the output
  size (then resampled), never a coarser one.

Where large_image answers a region outside the image (or of zero size) with an empty
body, tilecast answers 400 naming the parameter. Like large_image, a level missing from
the file is replaced by a finer stored one (``getPreferredLevel``) -- unless that read
would pass the region bound, when tilecast reads its own synthesized, cached level.
No numpy here: the api validates with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid
from tilecast.common.regionparams import (
    BOTTOM,
    EXACT,
    LEFT,
    MAGNIFICATION,
    MM_X,
    MM_Y,
    PER_MM,
    REGION_HEIGHT,
    REGION_WIDTH,
    RIGHT,
    TOP,
    UNITS_WH,
    parse_units,
    positive_number,
)

# large_image's aspect rule: one given side bounds the other at 16x it.
ONE_SIDE_RATIO = 16
# large_image's TileSource._maxSkippedLevels.
MAX_SKIPPED_LEVELS = 3


def key_number(value: float | None) -> str:
    return "n" if value is None else repr(value)


@dataclass(frozen=True)
class Optics:
    """An image's full-resolution pixel size in mm and magnification (its metadata's
    ``mm_x``, ``mm_y``, ``magnification``: large_image's ``getNativeMagnification``)."""

    mm_x: float | None = None
    mm_y: float | None = None
    magnification: float | None = None

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Optics:
        def value(name: str) -> float | None:
            raw = meta.get(name)
            return float(raw) if isinstance(raw, int | float) and raw else None

        return cls(value("mm_x"), value("mm_y"), value("magnification"))


# Levels a magnification or pixel size may lie from the image's own: a factor of 2^32.
MAX_SCALE_STEPS = 32


@dataclass(frozen=True)
class LevelScale:
    """large_image's ``getMagnificationForLevel``: full-resolution pixels per pixel of a
    (possibly fractional) level, and that level's pixel size in mm."""

    scale: float = 1.0
    mm_x: float | None = None
    mm_y: float | None = None

    @classmethod
    def at(cls, level: float, top_level: int, optics: Optics) -> LevelScale:
        if level == top_level:
            return cls(1.0, optics.mm_x, optics.mm_y)
        scale = 2.0 ** (top_level - level)
        if optics.mm_x and optics.mm_y:
            return cls(scale, optics.mm_x * scale, optics.mm_y * scale)
        return cls(scale, optics.mm_x, optics.mm_y)


def unit_scale(
    units: str, size_x: int, size_y: int, optics: Optics, desired: LevelScale | None
) -> tuple[float, float]:
    """Full-resolution pixels per unit along x and y (large_image's ``_scaleFromUnits``).
    ``desired`` is the output level's scale when the output is sized by magnification
    (``width`` and ``height`` absent), else None."""
    if units == "fraction":
        return float(size_x), float(size_y)
    if units == "mag_pixels":
        if desired is None:
            raise BadRequest(
                "units mag_pixels are pixels at the output magnification, which only "
                "magnification/mm_x/mm_y set (not width or height)",
                parameter="units",
            )
        return desired.scale, desired.scale
    if units in PER_MM:
        if desired is None or not (desired.mm_x and desired.mm_y):
            desired = LevelScale(1.0, optics.mm_x, optics.mm_y)
        if not (desired.mm_x and desired.mm_y):
            raise BadRequest(
                f"units {units} need the image's pixel size (mm_x/mm_y), which it lacks",
                parameter="units",
            )
        per_mm = PER_MM[units]
        return desired.scale / desired.mm_x / per_mm, desired.scale / desired.mm_y / per_mm
    return 1.0, 1.0


@dataclass(frozen=True)
class OutputScale:
    """``magnification``, ``mm_x``, ``mm_y`` and ``exact`` of a region: when neither
    ``width`` nor ``height`` is given, the output is the region at the level that has
    this magnification or pixel size (fractional levels allowed, as large_image's
    ``getLevelForMagnification(rounding=None)``); ``exact`` asks for a stored level."""

    magnification: float | None = None
    mm_x: float | None = None
    mm_y: float | None = None
    exact: bool = False

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> OutputScale:
        values = {p.name: positive_number(args, p) for p in (MAGNIFICATION, MM_X, MM_Y)}
        exact = EXACT.boolean(args) and any(values.values())
        return cls(exact=exact, **values)

    @property
    def given(self) -> bool:
        return bool(self.magnification or self.mm_x or self.mm_y)

    @property
    def key_part(self) -> str:
        if not self.given:
            return ""
        values = (self.magnification, self.mm_x, self.mm_y)
        return ";s" + ",".join(key_number(v) for v in values) + (",exact" if self.exact else "")

    def level(self, top_level: int, optics: Optics) -> float | None:
        """The level of this scale (top_level when the image's metadata cannot tell);
        None when ``exact`` and no whole level within the image matches."""
        ratios = []
        if self.magnification and optics.magnification:
            ratios.append(self.magnification / optics.magnification)
        if self.mm_x and optics.mm_x:
            ratios.append(optics.mm_x / self.mm_x)
        if self.mm_y and optics.mm_y:
            ratios.append(optics.mm_y / self.mm_y)
        if any(not 0 < ratio < math.inf for ratio in ratios):  # under- or overflowed
            raise self._too_far()
        steps = [round(math.log(ratio) / math.log(2), 4) for ratio in ratios]
        if not steps:
            return top_level
        if self.exact and any(int(step) != step or step != steps[0] for step in steps):
            return None
        level = top_level + round(sum(steps) / len(steps), 4)
        if self.exact and (level > top_level or level < 0):
            return None
        if abs(level - top_level) > MAX_SCALE_STEPS:
            raise self._too_far()  # 2 ** steps would overflow, or the output be nothing
        return level

    def _too_far(self) -> BadRequest:
        name = next(n for n in ("magnification", "mm_x", "mm_y") if getattr(self, n))
        return BadRequest(
            f"{name} is more than 2^{MAX_SCALE_STEPS} times the image's own", parameter=name
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "magnification": self.magnification,
            "mm_x": self.mm_x,
            "mm_y": self.mm_y,
            "exact": self.exact,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> OutputScale:
        if not payload:
            return cls()
        return cls(
            _optional_float(payload.get("magnification")),
            _optional_float(payload.get("mm_x")),
            _optional_float(payload.get("mm_y")),
            bool(payload.get("exact", False)),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class RegionSpec:
    """The part of the image a request names, in its own units (not yet resolved)."""

    left: float | None = None
    top: float | None = None
    right: float | None = None
    bottom: float | None = None
    width: float | None = None  # regionWidth
    height: float | None = None  # regionHeight
    units: str = "base_pixels"
    # large_image's unitsWH: other units for regionWidth/regionHeight, which then win
    # over right/bottom.
    units_wh: str | None = None

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> RegionSpec:
        return cls(
            left=LEFT.number(args),
            top=TOP.number(args),
            right=RIGHT.number(args),
            bottom=BOTTOM.number(args),
            width=REGION_WIDTH.number(args),
            height=REGION_HEIGHT.number(args),
            units=parse_units(args),
            units_wh=parse_units(args, UNITS_WH) if args.get(UNITS_WH.name) else None,
        )

    @property
    def key_part(self) -> str:
        values = (self.left, self.top, self.right, self.bottom, self.width, self.height)
        units = self.units if self.units_wh is None else f"{self.units}/{self.units_wh}"
        return f"{units}," + ",".join(key_number(v) for v in values)

    def to_payload(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "top": self.top,
            "right": self.right,
            "bottom": self.bottom,
            "width": self.width,
            "height": self.height,
            "units": self.units,
            "units_wh": self.units_wh,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RegionSpec:
        def num(name: str) -> float | None:
            value = payload.get(name)
            return None if value is None else float(value)

        return cls(
            left=num("left"),
            top=num("top"),
            right=num("right"),
            bottom=num("bottom"),
            width=num("width"),
            height=num("height"),
            units=str(payload.get("units", "base_pixels")),
            units_wh=payload.get("units_wh"),
        )

    def resolve(
        self,
        size_x: int,
        size_y: int,
        optics: Optics | None = None,
        desired: LevelScale | None = None,
    ) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in full-resolution pixels, clipped to the image
        (large_image's ``_getRegionBounds``). A region with nothing left after clipping
        is a 400 naming the parameter to blame; so are units the image cannot convert."""
        optics = optics or Optics()
        scale_x, scale_y = unit_scale(self.units, size_x, size_y, optics, desired)
        right, bottom = self.right, self.bottom
        scale_w, scale_h = scale_x, scale_y
        if self.units_wh is not None:
            scale_w, scale_h = unit_scale(self.units_wh, size_x, size_y, optics, desired)
            if self.left is not None and right is not None and self.width is not None:
                right = None
            if self.top is not None and bottom is not None and self.height is not None:
                bottom = None
        left, right = _resolve_axis(self.left, right, self.width, size_x, (scale_x, scale_w), "x")
        top, bottom = _resolve_axis(self.top, bottom, self.height, size_y, (scale_y, scale_h), "y")
        return left, top, right, bottom


_AXIS_NAMES = {"x": ("left", "right", "regionWidth"), "y": ("top", "bottom", "regionHeight")}


def _resolve_axis(
    start: float | None,
    end: float | None,
    length: float | None,
    size: int,
    scales: tuple[float, float],
    axis: str,
) -> tuple[int, int]:
    """One axis of large_image's ``_getRegionBounds`` (cropToImage=True); ``scales``:
    full-resolution pixels per unit of the edges and of the length."""
    start_name, end_name, length_name = _AXIS_NAMES[axis]
    scale, length_scale = scales
    values = {
        "start": None if start is None else start * scale,
        "end": None if end is None else end * scale,
        "length": None if length is None else length * length_scale,
    }
    for name in ("start", "end"):
        value = values[name]
        if value is not None and value < 0:
            values[name] = value + size
    lo, hi, span = values["start"], values["end"], values["length"]
    if lo is None:
        lo = hi - span if hi is not None and span is not None else 0.0
    if hi is None:
        hi = lo + span if span is not None else float(size)
    first = min(size, max(0, round(lo)))
    last = min(size, max(first, round(hi)))
    if last > first:
        return first, last
    given = {start_name: start, end_name: end, length_name: length}
    if lo >= size:
        order, why = (start_name, end_name, length_name), "is past the image"
    elif hi <= 0:
        order, why = (end_name, length_name, start_name), "is before the image"
    elif end is None:
        order, why = (length_name, start_name, end_name), "leaves no pixels"
    else:
        order, why = (end_name, length_name, start_name), "leaves no pixels"
    blame = next((name for name in order if given[name] is not None), order[0])
    raise BadRequest(
        f"the region {why} along {axis} (the image is {size} pixels; "
        f"{start_name}/{end_name}/{length_name} select none of them)",
        parameter=blame,
    )


def output_size(
    width: float | None, height: float | None, region_w: int, region_h: int
) -> tuple[int, int]:
    """large_image's ``_calculateWidthHeight``: fit region_w x region_h into width x
    height keeping the aspect ratio; neither given means the region's own size."""
    return fit_output(width, height, region_w, region_h)[:2]


def fit_output(
    width: float | None, height: float | None, region_w: int, region_h: int
) -> tuple[int, int, float]:
    """:func:`output_size` and the scale large_image derives with it (region pixels per
    output pixel, from the side that bounds the output)."""
    if not width and not height:
        return region_w, region_h, 1.0
    if region_w == 0 or region_h == 0:
        return 0, 0, 1.0
    if height and not width:
        width = height * ONE_SIDE_RATIO
    if width and not height:
        height = width * ONE_SIDE_RATIO
    assert width is not None and height is not None
    scaled_w = max(1, int(region_w * height / region_h))
    scaled_h = max(1, int(region_h * width / region_w))
    if scaled_w == width or (width * region_h > height * region_w and scaled_h != height):
        scale = region_h / height
        width = scaled_w
    else:
        scale = region_w / width
        height = scaled_h
    return int(width), int(height), scale


@dataclass(frozen=True)
class RegionPlan:
    """What a worker reads and produces: the area ``left..right`` x ``top..bottom``
    (exclusive) of level ``level``, resampled to ``out_width`` x ``out_height``.
    ``scale`` is large_image's ``requestedScale``: level pixels per output pixel."""

    level: int
    left: int
    top: int
    right: int
    bottom: int
    out_width: int
    out_height: int
    scale: float = 1.0

    @property
    def read_width(self) -> int:
        return self.right - self.left

    @property
    def read_height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class RegionAsk:
    """Everything a region plan depends on: the area (``spec``), the answer's size
    (``width`` x ``height``, or neither and ``scale``; ``fill``: letterboxed to that size;
    ``stretch``: exactly that size), the image (``grid``, ``optics``, and ``native``
    where the stored levels are known) and the bound (``max_pixels`` output pixels, or
    read pixels with ``bound_read``)."""

    spec: RegionSpec
    width: int | None
    height: int | None
    grid: Grid
    max_pixels: int
    native: Callable[[int], bool] | None = None
    bound_read: bool = False
    optics: Optics | None = None
    scale: OutputScale | None = None
    fill: bool = False
    stretch: bool = False


def plan_region(ask: RegionAsk) -> RegionPlan:
    """The level and area to read for ``spec`` fitted in ``width`` x ``height`` (or,
    neither given, at ``scale``), as large_image's tile iterator chooses them; 400 past
    ``max_pixels`` output pixels (``bound_read``: past ``max_pixels`` read pixels, for
    analyses; ``fill``: the letterboxed width x height counts).

    ``native(z)`` tells which levels the file stores (workers know; the api, which only
    validates, does not). With it, a missing level is replaced by the native level up
    to two finer that large_image's ``getPreferredLevel`` reads instead -- as long as
    that read stays within ``max_pixels``; past that, tilecast's own synthesized level
    is read (from the cache), which large_image does only for gaps of 3+ levels.
    """
    spec, width, height, grid = ask.spec, ask.width, ask.height, ask.grid
    max_pixels, native, bound_read, scale = ask.max_pixels, ask.native, ask.bound_read, ask.scale
    fill, stretch = ask.fill, ask.stretch
    optics = ask.optics or Optics()
    size_x, size_y, top_level = grid.size_x, grid.size_y, grid.top_level
    wanted_level: float | None = None
    desired: LevelScale | None = None
    if not width and not height:
        scale = scale or OutputScale()
        wanted_level = scale.level(top_level, optics)
        if wanted_level is None:
            raise BadRequest(
                "no level of the image has exactly that magnification or pixel size",
                parameter="exact",
            )
        desired = LevelScale.at(wanted_level, top_level, optics)
    left, top, right, bottom = spec.resolve(size_x, size_y, optics, desired)
    region_w, region_h = right - left, bottom - top
    if desired is not None and desired.scale != 1.0:
        out_w, out_h, requested = fit_output(
            region_w / desired.scale, region_h / desired.scale, region_w, region_h
        )
        # A region smaller than one output pixel at that scale is one pixel, not none.
        out_w, out_h = max(1, out_w), max(1, out_h)
        requested = desired.scale
    else:
        out_w, out_h, requested = fit_output(width, height, region_w, region_h)
        if stretch and width and height:
            # IIIF's ``w,h`` and DZI's edge tiles: exactly that size, aspect not kept.
            out_w, out_h = width, height
    if not bound_read:
        blame = None
        if desired is not None and desired.scale != 1.0 and scale is not None:
            given = {"magnification": scale.magnification, "mm_x": scale.mm_x, "mm_y": scale.mm_y}
            blame = next(name for name, value in given.items() if value)
        boxed = (max(out_w, width or 0), max(out_h, height or 0)) if fill else (out_w, out_h)
        check_size(*boxed, max_pixels, width, height, "output", blame)
    level = top_level
    if (out_w, out_h) != (region_w, region_h):
        level = grid.level_for(min(out_w / region_w, out_h / region_h))
        if native is not None:
            preferred = preferred_level(level, top_level, native)
            factor = grid.scale(preferred)
            if region_w * region_h <= max_pixels * factor * factor:
                level = preferred
    if wanted_level is not None and scale is not None and scale.exact and wanted_level != level:
        raise BadRequest(
            "the image stores no level at exactly that magnification or pixel size",
            parameter="exact",
        )
    if level < top_level:
        factor = grid.scale(level)
        left, top = left // factor, top // factor
        right = max(right // factor, left + 1)
        bottom = max(bottom // factor, top + 1)
        requested /= factor
    if bound_read:
        check_size(right - left, bottom - top, max_pixels, width, height, "analysed area")
    return RegionPlan(level, left, top, right, bottom, out_w, out_h, requested)


def check_size(
    w: int,
    h: int,
    max_pixels: int,
    width: int | None,
    height: int | None,
    what: str,
    blame: str | None = None,
) -> None:
    if w * h <= max_pixels:
        return
    raise BadRequest(
        f"the {what} would be {w} x {h} pixels, more than the {max_pixels} this server "
        "handles at once (TILECAST_MAX_REGION_PIXELS); ask for a smaller width/height "
        "or region",
        parameter=blame or ("height" if height and not width else "width"),
    )


def preferred_level(level: int, top_level: int, native: Callable[[int], bool]) -> int:
    """large_image's ``getPreferredLevel``: the nearest stored level at least as fine as
    ``level``, stepping back three levels at a time while that is 3+ levels finer."""
    base = level
    while not native(level) and level < top_level:
        level += 1
    while level - base >= MAX_SKIPPED_LEVELS:
        level -= MAX_SKIPPED_LEVELS
    return level
