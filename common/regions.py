"""Regions, pixels, histograms and band information: the four request types, their
canonical keys and task payloads.

The api parses these at the edge (``from_query``, with common/regionparams.py),
validates them against the image's size on a cache miss (``plan``, common/regionplan.py)
and names them in Redis by their canonical key; workers render them with the same
geometry. No numpy here: the api imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.fill import fill_key_part
from tilecast.common.grid import Grid
from tilecast.common.keys import cache_key
from tilecast.common.regionparams import (
    BINS,
    DEFAULT_BINS,
    DENSITY,
    ONLY_MIN_MAX,
    OUTPUT_HEIGHT,
    OUTPUT_WIDTH,
    RANGE_MAX,
    RANGE_MIN,
    ROUND_RANGE,
    parse_resample,
)
from tilecast.common.regionplan import (
    LevelScale,
    Optics,
    OutputScale,
    RegionAsk,
    RegionPlan,
    RegionSpec,
    check_size,
    key_number,
    plan_region,
    unit_scale,
)
from tilecast.common.style import NO_STYLE, style_hash

KIND_REGION = "region"
KIND_PIXEL = "pixel"
KIND_HISTOGRAM = "hist"
KIND_BANDS = "bands"
JSON_ENCODING = "json"
JSON_CONTENT_TYPE = "application/json"
# common.counters counter of regions written (pixels, histograms and bands are not counted).
REGIONS_RENDERED = "regions_rendered"
# large_image's histogram endpoint documents 2048 x 2048 as its analysis size, and
# getBandInformation analyses at most 2048 x 2048 pixels.
HISTOGRAM_SIZE = 2048
BANDS_ANALYSIS_SIZE = 2048


@dataclass(frozen=True)
class RegionRequest:
    """``GET /item/{id}/tiles/region``: an area, resampled, styled and encoded;
    letterboxed to ``width`` x ``height`` with ``fill`` (see :func:`parse_fill`), or
    sized by ``scale`` when neither ``width`` nor ``height`` is given."""

    source: str
    spec: RegionSpec = field(default_factory=RegionSpec)
    width: int | None = None
    height: int | None = None
    frame: int = 0
    style: str | None = None
    encoding: EncodingOptions = field(default_factory=EncodingOptions)
    fill: str | None = None
    scale: OutputScale = field(default_factory=OutputScale)
    # Output exactly ``width`` x ``height`` (both given), not fitted keeping the
    # region's aspect: the IIIF and DZI endpoints (api/protocols/handlers.py) ask it.
    stretch: bool = False

    def __post_init__(self) -> None:
        # One request, one key: what large_image ignores is dropped here.
        if self.width or self.height:
            object.__setattr__(self, "scale", OutputScale())
        if not (self.width and self.height):
            object.__setattr__(self, "fill", None)
            object.__setattr__(self, "stretch", False)

    def key(self, generation: int) -> str:
        width = key_number(None if self.width is None else float(self.width))
        height = key_number(None if self.height is None else float(self.height))
        return cache_key(
            KIND_REGION,
            self.source,
            generation,
            self.frame,
            self.spec.key_part + self.scale.key_part,
            width + fill_key_part(self.fill) + (";stretch" if self.stretch else ""),
            height,
            style_hash(self.style),
            self.encoding.key_part,
        )

    def plan(
        self,
        *,
        grid: Grid,
        max_pixels: int,
        native: Callable[[int], bool] | None = None,
        optics: Optics | None = None,
    ) -> RegionPlan:
        return plan_region(
            RegionAsk(
                self.spec,
                self.width,
                self.height,
                grid=grid,
                max_pixels=max_pixels,
                native=native,
                optics=optics,
                scale=self.scale,
                fill=self.fill is not None,
                stretch=self.stretch,
            )
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
            "fill": self.fill,
            "scale": self.scale.to_payload(),
            "stretch": self.stretch,
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
            fill=payload.get("fill"),
            scale=OutputScale.from_payload(payload.get("scale")),
            stretch=bool(payload.get("stretch", False)),
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
            key_number(self.left),
            key_number(self.top),
            NO_STYLE,
            JSON_ENCODING,
        )

    def locate(
        self, size_x: int, size_y: int, optics: Optics | None = None
    ) -> tuple[int, int] | None:
        """The pixel's (x, y), or None when it lies outside the image (large_image's
        ``getPixel``: a 1 x 1 base-pixel region at left, top, rounded; its output is the
        full resolution, so ``mag_pixels`` are base pixels)."""
        optics = optics or Optics()
        desired = LevelScale(1.0, optics.mm_x, optics.mm_y)
        scale_x, scale_y = unit_scale(self.units, size_x, size_y, optics, desired)
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
    resolution that ``width`` x ``height`` asks for: large_image's ``histogram``, whose
    tile iterator resamples (``resample``, on unless ``false``/``0``) the level it reads
    to that size, tile by tile. Neither ``width`` nor ``height``: the area at full
    resolution, as large_image -- up to 2048 x 2048, past which tilecast analyses the
    level that size selects, as it is (a bound large_image does not have)."""

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
    resample: bool = False
    # Neither width nor height: the output at a magnification or pixel size instead.
    scale: OutputScale = field(default_factory=OutputScale)

    def __post_init__(self) -> None:
        if self.width or self.height:  # large_image ignores the scale then: one key
            object.__setattr__(self, "scale", OutputScale())

    def key(self, generation: int) -> str:
        if isinstance(self.range, tuple):
            range_part = f"{self.range[0]!r}_{self.range[1]!r}"
        else:
            range_part = self.range or "auto"
        options = (
            f"b{self.bins}.r{range_part}.d{int(self.density)}.m{int(self.only_min_max)}"
            f".s{int(self.resample)}"
        )
        return cache_key(
            KIND_HISTOGRAM,
            self.source,
            generation,
            self.frame,
            self.spec.key_part + self.scale.key_part,
            f"{self.width or 0}x{self.height or 0}",
            options,
            NO_STYLE,
            JSON_ENCODING,
        )

    def plan(
        self,
        *,
        grid: Grid,
        max_pixels: int,
        native: Callable[[int], bool] | None = None,
        optics: Optics | None = None,
    ) -> RegionPlan:
        plan = plan_region(
            RegionAsk(
                self.spec,
                self.width,
                self.height,
                grid=grid,
                max_pixels=max_pixels,
                bound_read=True,
                native=native,
                optics=optics,
                scale=self.scale,
            )
        )
        if self.resample:
            check_size(
                plan.out_width, plan.out_height, max_pixels, self.width, self.height, "output"
            )
        return plan

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
            "resample": self.resample,
            "scale": self.scale.to_payload(),
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
            resample=bool(payload.get("resample", False)),
            scale=OutputScale.from_payload(payload.get("scale")),
        )

    @classmethod
    def from_query(cls, source: str, frame: int, args: Mapping[str, str]) -> HistogramRequest:
        """large_image's histogram parameters: ``bins``, ``rangeMin``/``rangeMax``
        (a missing one defaults to 0 / 256 as in its endpoint), ``roundRange``,
        ``density``, ``onlyMinMax``, ``width``/``height`` (default 2048, unless
        ``magnification``/``mm_x``/``mm_y`` size the output), ``resample`` and the region
        parameters."""
        width = OUTPUT_WIDTH.integer(args)
        height = OUTPUT_HEIGHT.integer(args)
        resample = parse_resample(args)
        scale = OutputScale.from_query(args)
        if width is None and height is None and not scale.given:
            width = height = HISTOGRAM_SIZE
            resample = False
        bins = BINS.integer(args)
        assert bins is not None
        low = RANGE_MIN.number(args)
        high = RANGE_MAX.number(args)
        hist_range: tuple[float, float] | str | None = None
        if low is not None or high is not None:
            hist_range = (0.0 if low is None else low, 256.0 if high is None else high)
            if not hist_range[1] > hist_range[0]:
                raise BadRequest(
                    f"rangeMax ({hist_range[1]:g}) must be above rangeMin ({hist_range[0]:g})",
                    parameter=RANGE_MAX.name if high is not None else RANGE_MIN.name,
                )
        elif ROUND_RANGE.boolean(args):
            hist_range = "round"
        return cls(
            source=source,
            spec=RegionSpec.from_query(args),
            width=width,
            height=height,
            frame=frame,
            bins=bins,
            range=hist_range,
            density=DENSITY.boolean(args),
            only_min_max=ONLY_MIN_MAX.boolean(args),
            resample=resample,
            scale=scale,
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
