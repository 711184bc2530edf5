"""Regions, pixels, histograms and band information: request types, geometry, keys.

The api parses these at the edge (``from_query``), validates them against the image's
size on a cache miss, and names them in Redis by their canonical key; workers render
them with the same geometry. No numpy here: the api imports this module.

Geometry is large_image's (``_getRegionBounds``, ``_calculateWidthHeight`` and the
tile iterator's level choice), so a region covers the same pixels and is read from
the same resolution:

- ``left``/``top``/``right``/``bottom``/``regionWidth``/``regionHeight`` in ``units``
  (``base_pixels``: full-resolution pixels; ``fraction``: 0-1 of the image). Negative
  values count from the right or bottom edge; missing edges default to the image's;
  the result is rounded to whole pixels and clipped to the image.
- ``width``/``height`` bound the output, keeping the aspect ratio (one alone: the other
  is at most 16x it); neither means the region's own size.
- The region is read from the coarsest level whose resolution is at least the output
  size (then resampled), never a coarser one.

Where large_image answers a region outside the image (or of zero size) with an empty
body, tilecast answers 400 naming the parameter. Like large_image, a level missing from
the file is replaced by a finer stored one (``getPreferredLevel``) -- unless that read
would pass the region bound, when tilecast reads its own synthesized, cached level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.encoding import EncodingOptions, parse_bool
from common.errors import BadRequest
from common.params import bounded_int
from common.style import NO_STYLE, style_hash
from common.tiles import cache_key

KIND_REGION = "region"
KIND_PIXEL = "pixel"
KIND_HISTOGRAM = "hist"
KIND_BANDS = "bands"
JSON_ENCODING = "json"
JSON_CONTENT_TYPE = "application/json"
# common.stats counter of regions written (pixels, histograms and bands are not counted).
REGIONS_RENDERED = "regions_rendered"

# large_image's names for the two units tilecast takes.
UNITS: dict[str, str] = {
    "": "base_pixels",
    "base": "base_pixels",
    "base_pixel": "base_pixels",
    "base_pixels": "base_pixels",
    "fraction": "fraction",
}
# Coordinates beyond this are not an image (and would overflow the pixel arithmetic).
MAX_COORDINATE = 1e12
MAX_OUTPUT_SIDE = 2**31 - 1
# large_image's histogram endpoint documents 2048 x 2048 as its analysis size, and
# getBandInformation analyses at most 2048 x 2048 pixels.
HISTOGRAM_SIZE = 2048
BANDS_ANALYSIS_SIZE = 2048
DEFAULT_BINS = 256
MAX_BINS = 65536
# large_image's aspect rule: one given side bounds the other at 16x it.
ONE_SIDE_RATIO = 16
# large_image's TileSource._maxSkippedLevels.
MAX_SKIPPED_LEVELS = 3


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number, not {raw!r}", parameter=name) from None
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise BadRequest(f"{name} must be a finite number, not {raw!r}", parameter=name)
    return value + 0.0  # -0.0 -> 0.0: one spelling, one key


def _optional_number(args: Mapping[str, str], name: str) -> float | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    return _number(raw, name)


def _key_number(value: float | None) -> str:
    return "n" if value is None else repr(value)


def parse_units(args: Mapping[str, str]) -> str:
    raw = args.get("units") or ""
    units = UNITS.get(raw.lower())
    if units is None:
        raise BadRequest(f"unknown units {raw!r}; one of base_pixels, fraction", parameter="units")
    return units


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

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> RegionSpec:
        return cls(
            left=_optional_number(args, "left"),
            top=_optional_number(args, "top"),
            right=_optional_number(args, "right"),
            bottom=_optional_number(args, "bottom"),
            width=_optional_number(args, "regionWidth"),
            height=_optional_number(args, "regionHeight"),
            units=parse_units(args),
        )

    @property
    def key_part(self) -> str:
        values = (self.left, self.top, self.right, self.bottom, self.width, self.height)
        return f"{self.units}," + ",".join(_key_number(v) for v in values)

    def to_payload(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "top": self.top,
            "right": self.right,
            "bottom": self.bottom,
            "width": self.width,
            "height": self.height,
            "units": self.units,
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
        )

    def resolve(self, size_x: int, size_y: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in full-resolution pixels, clipped to the image
        (large_image's ``_getRegionBounds``). A region with nothing left after clipping
        is a 400 naming the parameter to blame."""
        left, right = _resolve_axis(
            self.left, self.right, self.width, size_x, self._scale(size_x), "x"
        )
        top, bottom = _resolve_axis(
            self.top, self.bottom, self.height, size_y, self._scale(size_y), "y"
        )
        return left, top, right, bottom

    def _scale(self, size: int) -> float:
        return float(size) if self.units == "fraction" else 1.0


_AXIS_NAMES = {"x": ("left", "right", "regionWidth"), "y": ("top", "bottom", "regionHeight")}


def _resolve_axis(
    start: float | None,
    end: float | None,
    length: float | None,
    size: int,
    scale: float,
    axis: str,
) -> tuple[int, int]:
    """One axis of large_image's ``_getRegionBounds`` (cropToImage=True)."""
    start_name, end_name, length_name = _AXIS_NAMES[axis]
    values = {
        "start": None if start is None else start * scale,
        "end": None if end is None else end * scale,
        "length": None if length is None else length * scale,
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
    width: int | None, height: int | None, region_w: int, region_h: int
) -> tuple[int, int]:
    """large_image's ``_calculateWidthHeight``: fit region_w x region_h into width x
    height keeping the aspect ratio; neither given means the region's own size."""
    if not width and not height:
        return region_w, region_h
    if region_w == 0 or region_h == 0:
        return 0, 0
    if height and not width:
        width = height * ONE_SIDE_RATIO
    if width and not height:
        height = width * ONE_SIDE_RATIO
    assert width is not None and height is not None
    scaled_w = max(1, int(region_w * height / region_h))
    scaled_h = max(1, int(region_h * width / region_w))
    if scaled_w == width or (width * region_h > height * region_w and scaled_h != height):
        width = scaled_w
    else:
        height = scaled_h
    return int(width), int(height)


@dataclass(frozen=True)
class RegionPlan:
    """What a worker reads and produces: the area ``left..right`` x ``top..bottom``
    (exclusive) of level ``level``, resampled to ``out_width`` x ``out_height``."""

    level: int
    left: int
    top: int
    right: int
    bottom: int
    out_width: int
    out_height: int

    @property
    def read_width(self) -> int:
        return self.right - self.left

    @property
    def read_height(self) -> int:
        return self.bottom - self.top


def plan_region(
    spec: RegionSpec,
    width: int | None,
    height: int | None,
    *,
    size_x: int,
    size_y: int,
    levels: int,
    max_pixels: int,
    native: Callable[[int], bool] | None = None,
    bound_read: bool = False,
) -> RegionPlan:
    """The level and area to read for ``spec`` fitted in ``width`` x ``height``, as
    large_image's tile iterator chooses them; 400 past ``max_pixels`` output pixels
    (``bound_read``: past ``max_pixels`` read pixels, for analyses that never resample).

    ``native(z)`` tells which levels the file stores (workers know; the api, which only
    validates, does not). With it, a missing level is replaced by the native level up
    to two finer that large_image's ``getPreferredLevel`` reads instead -- as long as
    that read stays within ``max_pixels``; past that, tilecast's own synthesized level
    is read (from the cache), which large_image does only for gaps of 3+ levels.
    """
    left, top, right, bottom = spec.resolve(size_x, size_y)
    region_w, region_h = right - left, bottom - top
    out_w, out_h = output_size(width, height, region_w, region_h)
    if not bound_read:
        _check_size(out_w, out_h, max_pixels, width, height, "output")
    top_level = levels - 1
    level = top_level
    if (out_w, out_h) != (region_w, region_h):
        ratio = min(out_w / region_w, out_h / region_h)
        wanted = max(0, top_level + math.ceil(round(math.log(ratio) / math.log(2), 4)))
        level = min(wanted, top_level)
        if native is not None:
            preferred = preferred_level(level, top_level, native)
            scale = 2 ** (top_level - preferred)
            if region_w * region_h <= max_pixels * scale * scale:
                level = preferred
    if level < top_level:
        factor = 2 ** (top_level - level)
        left, top = left // factor, top // factor
        right = max(right // factor, left + 1)
        bottom = max(bottom // factor, top + 1)
    if bound_read:
        _check_size(right - left, bottom - top, max_pixels, width, height, "analysed area")
    return RegionPlan(level, left, top, right, bottom, out_w, out_h)


def _check_size(
    w: int, h: int, max_pixels: int, width: int | None, height: int | None, what: str
) -> None:
    if w * h <= max_pixels:
        return
    raise BadRequest(
        f"the {what} would be {w} x {h} pixels, more than the {max_pixels} this server "
        "handles at once (TILECAST_MAX_REGION_PIXELS); ask for a smaller width/height "
        "or region",
        parameter="height" if height and not width else "width",
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


def parse_output_side(args: Mapping[str, str], name: str) -> int | None:
    value = bounded_int(args, name, None, 1, MAX_OUTPUT_SIDE)
    return value


# --- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionRequest:
    """``GET /item/{id}/tiles/region``: an area, resampled, styled and encoded."""

    source: str
    spec: RegionSpec = field(default_factory=RegionSpec)
    width: int | None = None
    height: int | None = None
    frame: int = 0
    style: str | None = None
    encoding: EncodingOptions = field(default_factory=EncodingOptions)

    def key(self, generation: int) -> str:
        return cache_key(
            KIND_REGION,
            self.source,
            generation,
            self.frame,
            self.spec.key_part,
            _key_number(None if self.width is None else float(self.width)),
            _key_number(None if self.height is None else float(self.height)),
            style_hash(self.style),
            self.encoding.key_part,
        )

    def plan(
        self,
        *,
        size_x: int,
        size_y: int,
        levels: int,
        max_pixels: int,
        native: Callable[[int], bool] | None = None,
    ) -> RegionPlan:
        return plan_region(
            self.spec,
            self.width,
            self.height,
            size_x=size_x,
            size_y=size_y,
            levels=levels,
            max_pixels=max_pixels,
            native=native,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "spec": self.spec.to_payload(),
            "width": self.width,
            "height": self.height,
            "frame": self.frame,
            "style": self.style,
            "encoding": self.encoding.to_payload(),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RegionRequest:
        return cls(
            source=str(payload["source"]),
            spec=RegionSpec.from_payload(payload["spec"]),
            width=_optional_int(payload.get("width")),
            height=_optional_int(payload.get("height")),
            frame=int(payload.get("frame", 0)),
            style=payload.get("style"),
            encoding=EncodingOptions.from_payload(payload["encoding"]),
        )


@dataclass(frozen=True)
class PixelRequest:
    """``GET /item/{id}/tiles/pixel``: one full-resolution pixel's values."""

    source: str
    left: float
    top: float
    units: str = "base_pixels"
    frame: int = 0

    def key(self, generation: int) -> str:
        return cache_key(
            KIND_PIXEL,
            self.source,
            generation,
            self.frame,
            self.units,
            _key_number(self.left),
            _key_number(self.top),
            NO_STYLE,
            JSON_ENCODING,
        )

    def locate(self, size_x: int, size_y: int) -> tuple[int, int] | None:
        """The pixel's (x, y), or None when it lies outside the image (large_image's
        ``getPixel``: a 1 x 1 base-pixel region at left, top, rounded)."""
        scale_x = float(size_x) if self.units == "fraction" else 1.0
        scale_y = float(size_y) if self.units == "fraction" else 1.0
        x = _pixel_axis(self.left * scale_x, size_x)
        y = _pixel_axis(self.top * scale_y, size_y)
        if x is None or y is None:
            return None
        return x, y

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "left": self.left,
            "top": self.top,
            "units": self.units,
            "frame": self.frame,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PixelRequest:
        return cls(
            source=str(payload["source"]),
            left=float(payload["left"]),
            top=float(payload["top"]),
            units=str(payload.get("units", "base_pixels")),
            frame=int(payload.get("frame", 0)),
        )


def _pixel_axis(start: float, size: int) -> int | None:
    if start < 0:
        start += size
    first = min(size, max(0, round(start)))
    last = min(size, max(first, round(start + 1)))
    return first if last > first else None


@dataclass(frozen=True)
class HistogramRequest:
    """``GET /item/{id}/tiles/histogram``: per-band histograms of an area at the
    resolution that ``width`` x ``height`` asks for (large_image's ``histogram`` with
    ``resample=False``, the endpoint's documented default)."""

    source: str
    spec: RegionSpec = field(default_factory=RegionSpec)
    width: int | None = HISTOGRAM_SIZE
    height: int | None = HISTOGRAM_SIZE
    frame: int = 0
    bins: int = DEFAULT_BINS
    # None: each band's [min, max + 1]; "round": that, with integer bins for integer
    # data; a pair: that range for every band.
    range: tuple[float, float] | str | None = None
    density: bool = False
    only_min_max: bool = False

    def key(self, generation: int) -> str:
        if isinstance(self.range, tuple):
            range_part = f"{self.range[0]!r}_{self.range[1]!r}"
        else:
            range_part = self.range or "auto"
        options = f"b{self.bins}.r{range_part}.d{int(self.density)}.m{int(self.only_min_max)}"
        return cache_key(
            KIND_HISTOGRAM,
            self.source,
            generation,
            self.frame,
            self.spec.key_part,
            f"{self.width or 0}x{self.height or 0}",
            options,
            NO_STYLE,
            JSON_ENCODING,
        )

    def plan(
        self,
        *,
        size_x: int,
        size_y: int,
        levels: int,
        max_pixels: int,
        native: Callable[[int], bool] | None = None,
    ) -> RegionPlan:
        return plan_region(
            self.spec,
            self.width,
            self.height,
            size_x=size_x,
            size_y=size_y,
            levels=levels,
            max_pixels=max_pixels,
            bound_read=True,
            native=native,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "spec": self.spec.to_payload(),
            "width": self.width,
            "height": self.height,
            "frame": self.frame,
            "bins": self.bins,
            "range": list(self.range) if isinstance(self.range, tuple) else self.range,
            "density": self.density,
            "only_min_max": self.only_min_max,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> HistogramRequest:
        raw_range = payload.get("range")
        hist_range: tuple[float, float] | str | None
        if isinstance(raw_range, list | tuple):
            hist_range = (float(raw_range[0]), float(raw_range[1]))
        else:
            hist_range = None if raw_range is None else str(raw_range)
        return cls(
            source=str(payload["source"]),
            spec=RegionSpec.from_payload(payload["spec"]),
            width=_optional_int(payload.get("width")),
            height=_optional_int(payload.get("height")),
            frame=int(payload.get("frame", 0)),
            bins=int(payload.get("bins", DEFAULT_BINS)),
            range=hist_range,
            density=bool(payload.get("density", False)),
            only_min_max=bool(payload.get("only_min_max", False)),
        )

    @classmethod
    def from_query(cls, source: str, frame: int, args: Mapping[str, str]) -> HistogramRequest:
        """large_image's histogram parameters: ``bins``, ``rangeMin``/``rangeMax``
        (a missing one defaults to 0 / 256 as in its endpoint), ``roundRange``,
        ``density``, ``onlyMinMax``, ``width``/``height`` (default 2048) and the
        region parameters."""
        width = parse_output_side(args, "width")
        height = parse_output_side(args, "height")
        if width is None and height is None:
            width = height = HISTOGRAM_SIZE
        bins = bounded_int(args, "bins", DEFAULT_BINS, 1, MAX_BINS)
        assert bins is not None
        low = _optional_number(args, "rangeMin")
        high = _optional_number(args, "rangeMax")
        hist_range: tuple[float, float] | str | None = None
        if low is not None or high is not None:
            hist_range = (0.0 if low is None else low, 256.0 if high is None else high)
            if not hist_range[1] > hist_range[0]:
                raise BadRequest(
                    f"rangeMax ({hist_range[1]:g}) must be above rangeMin ({hist_range[0]:g})",
                    parameter="rangeMax" if high is not None else "rangeMin",
                )
        elif parse_bool(args, "roundRange"):
            hist_range = "round"
        return cls(
            source=source,
            spec=RegionSpec.from_query(args),
            width=width,
            height=height,
            frame=frame,
            bins=bins,
            range=hist_range,
            density=parse_bool(args, "density"),
            only_min_max=parse_bool(args, "onlyMinMax"),
        )


@dataclass(frozen=True)
class BandsRequest:
    """``GET /item/{id}/tiles/bands``: large_image's ``getBandInformation`` (with the
    statistics its girder endpoint asks for) of one frame."""

    source: str
    frame: int = 0

    def key(self, generation: int) -> str:
        size = f"{BANDS_ANALYSIS_SIZE}"
        return cache_key(
            KIND_BANDS, self.source, generation, self.frame, size, "-", "-", NO_STYLE,
            JSON_ENCODING,
        )  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        return {"source": self.source, "frame": self.frame}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BandsRequest:
        return cls(source=str(payload["source"]), frame=int(payload.get("frame", 0)))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
