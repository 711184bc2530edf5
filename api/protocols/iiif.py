"""IIIF Image API 3.0: parsing ``{region}/{size}/{rotation}/{quality}.{format}``, the
geometry it selects, canonical URLs and ``info.json`` (https://iiif.io/api/image/3.0/).

Compliance level 1, plus ``regionByPct``, ``sizeByPct``, ``sizeByConfinedWh``,
``sizeUpscaling`` (``^``), the canonical and profile ``Link`` headers, formats png,
webp and tif and quality ``color`` (the image as it is, like ``default``). Level 2 would also
need rotation by 90s and ``gray``, which tilecast does not render.

Errors follow the specification's section 7: malformed parameters are a 400 (so is a
region outside the image, a size past the region without ``^``, or past ``maxArea``);
well-formed values tilecast does not implement (rotation other than 0, mirroring,
``gray``/``bitonal``, formats gif/jp2/pdf) are a 501.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tilecast.api.protocols.boxes import PixelBox
from tilecast.common.errors import BadRequest, NotImplementedFeature
from tilecast.common.grid import Grid

CONTEXT = "http://iiif.io/api/image/3/context.json"
PROTOCOL = "http://iiif.io/api/image"
PROFILE = "level1"
PROFILE_URI = "http://iiif.io/api/image/3/level1.json"
JSON_LD_TYPE = f'application/ld+json;profile="{CONTEXT}"'
# IIIF format name -> tilecast encoding.
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tif": "TIFF"}
# The specification's other formats: well-formed, not implemented (501).
OTHER_FORMATS = frozenset({"gif", "jp2", "pdf"})
QUALITIES = frozenset({"default", "color"})
OTHER_QUALITIES = frozenset({"gray", "bitonal"})
EXTRA_FEATURES = (
    "regionByPct",
    "sizeByPct",
    "sizeByConfinedWh",
    "sizeUpscaling",
    "canonicalLinkHeader",
    "profileLinkHeader",
)
_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,12})?"  # bounded: never an infinity
_PIXELS = re.compile(r"([0-9]{1,12}),([0-9]{1,12}),([0-9]{1,12}),([0-9]{1,12})")
_PERCENT = re.compile(rf"pct:({_NUMBER}),({_NUMBER}),({_NUMBER}),({_NUMBER})")
_SIZE = re.compile(rf"(\^)?(?:(max)|pct:({_NUMBER})|(!)?([0-9]{{0,9}}),([0-9]{{0,9}}))")
_ROTATION = re.compile(rf"(!)?({_NUMBER})")


@dataclass(frozen=True)
class Region:
    """``full``, ``square``, ``x,y,w,h`` (``pixels``) or ``pct:x,y,w,h`` (``percent``)."""

    kind: str
    values: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Size:
    """``max``, ``w,``, ``,h``, ``pct:n``, ``w,h`` or ``!w,h`` (``confined``), each
    optionally ``^`` (``upscale``)."""

    kind: str
    width: int | None = None
    height: int | None = None
    percent: float | None = None
    upscale: bool = False


@dataclass(frozen=True)
class ImageRequest:
    region: Region
    size: Size
    quality: str
    format: str

    @property
    def encoding(self) -> str:
        return FORMATS[self.format]


def parse_request(region: str, size: str, rotation: str, quality_format: str) -> ImageRequest:
    """The four path segments after the identifier; 400 or 501 as the spec says."""
    parsed_region, parsed_size = parse_region(region), parse_size(size)
    parse_rotation(rotation)
    quality, fmt = parse_quality_format(quality_format)
    return ImageRequest(parsed_region, parsed_size, quality, fmt)


def parse_region(raw: str) -> Region:
    if raw in ("full", "square"):
        return Region(raw)
    pixels = _PIXELS.fullmatch(raw)
    percent = _PERCENT.fullmatch(raw)
    match = pixels or percent
    if match is None:
        raise BadRequest(
            f"region must be full, square, x,y,w,h or pct:x,y,w,h, not {raw!r}",
            parameter="region",
        )
    x, y, w, h = (float(v) for v in match.groups())
    if w <= 0 or h <= 0:
        raise BadRequest(f"the region {raw!r} has no width or height", parameter="region")
    return Region("pixels" if pixels else "percent", (x, y, w, h))


def parse_size(raw: str) -> Size:
    match = _SIZE.fullmatch(raw)
    if match is None:
        raise BadRequest(
            f"size must be max, w,, ,h, pct:n, w,h or !w,h (optionally ^), not {raw!r}",
            parameter="size",
        )
    caret, is_max, percent, bang, width, height = match.groups()
    upscale = caret is not None
    if is_max:
        return Size("max", upscale=upscale)
    if percent is not None:
        value = float(percent)
        if value <= 0:
            raise BadRequest("size pct:n needs n above 0", parameter="size")
        return Size("pct", percent=value, upscale=upscale)
    w = int(width) if width else None
    h = int(height) if height else None
    if w == 0 or h == 0:
        raise BadRequest(f"size {raw!r} asks for no pixels", parameter="size")
    if (w is None and h is None) or (bang and (w is None or h is None)):
        raise BadRequest(f"size {raw!r} names no width or height", parameter="size")
    if w is not None and h is not None:
        kind = "confined" if bang else "wh"
    else:
        kind = "w" if w is not None else "h"
    return Size(kind, w, h, upscale=upscale)


def parse_rotation(raw: str) -> None:
    """Only 0 (or 360: the same picture) is rendered; other angles and mirroring are
    well-formed but not implemented."""
    match = _ROTATION.fullmatch(raw)
    if match is None or float(match.group(2)) > 360:
        raise BadRequest(
            f"rotation must be a number from 0 to 360, optionally after !, not {raw!r}",
            parameter="rotation",
        )
    if match.group(1) or float(match.group(2)) not in (0.0, 360.0):
        raise NotImplementedFeature(
            f"rotation {raw!r} is not implemented: only 0", parameter="rotation"
        )


def parse_quality_format(raw: str) -> tuple[str, str]:
    quality, dot, fmt = raw.rpartition(".")
    if not dot:
        raise BadRequest(f"expected {{quality}}.{{format}}, not {raw!r}", parameter="quality")
    if quality not in QUALITIES:
        if quality in OTHER_QUALITIES:
            raise NotImplementedFeature(
                f"quality {quality!r} is not implemented", parameter="quality"
            )
        raise BadRequest(f"unknown quality {quality!r}", parameter="quality")
    if fmt not in FORMATS:
        if fmt in OTHER_FORMATS:
            raise NotImplementedFeature(f"format {fmt!r} is not implemented", parameter="format")
        raise BadRequest(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", parameter="format")
    return quality, fmt


# --- geometry --------------------------------------------------------------------------


def region_area(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the full-resolution image, cropped to it; a
    region wholly outside the image is a 400."""
    if region.kind == "full":
        return 0, 0, width, height
    if region.kind == "square":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side
    x, y, w, h = region.values
    if region.kind == "percent":
        x, w = x * width / 100, w * width / 100
        y, h = y * height / 100, h * height / 100
    left, top = round(x), round(y)
    right, bottom = min(width, round(x + w)), min(height, round(y + h))
    if left >= width or top >= height or right <= left or bottom <= top:
        raise BadRequest(
            f"the region lies outside the image ({width} x {height})", parameter="region"
        )
    return left, top, right, bottom


def max_size(region_w: int, region_h: int, max_area: int, upscale: bool) -> tuple[int, int]:
    """``max`` (``^max``: up to ``maxArea``): the region's size, scaled to fit in
    ``max_area`` pixels when it does not (or, upscaled, to fill it)."""
    area = region_w * region_h
    if area <= max_area and not upscale:
        return region_w, region_h
    scale = math.sqrt(max_area / area)
    width, height = max(1, math.floor(region_w * scale)), max(1, math.floor(region_h * scale))
    while width * height > max_area:  # float rounding at the bound
        width, height = max(1, width - 1), max(1, height - 1)
    return width, height


def output_size(size: Size, region_w: int, region_h: int, max_area: int) -> tuple[int, int]:
    """The returned image's pixels: as the spec's size forms say, with aspect-derived
    sides rounded; past the region without ``^`` or past ``max_area`` is a 400."""
    if size.kind == "max":
        return max_size(region_w, region_h, max_area, size.upscale)
    if size.kind == "pct":
        assert size.percent is not None
        scale = size.percent / 100
        out = (round(region_w * scale), round(region_h * scale))
    elif size.kind == "w":
        assert size.width is not None
        out = (size.width, round(region_h * size.width / region_w))
    elif size.kind == "h":
        assert size.height is not None
        out = (round(region_w * size.height / region_h), size.height)
    elif size.kind == "wh":
        assert size.width is not None and size.height is not None
        out = (size.width, size.height)
    else:
        out = _confined(size, region_w, region_h)
    width, height = max(1, out[0]), max(1, out[1])
    if not size.upscale and (width > region_w or height > region_h):
        raise BadRequest(
            f"size {width} x {height} is larger than the region ({region_w} x {region_h}); "
            "prefix it with ^ to upscale",
            parameter="size",
        )
    if width * height > max_area:
        raise BadRequest(
            f"size {width} x {height} is past this server's maxArea of {max_area} pixels",
            parameter="size",
        )
    return width, height


def _confined(size: Size, region_w: int, region_h: int) -> tuple[int, int]:
    assert size.width is not None and size.height is not None
    scale = min(size.width / region_w, size.height / region_h)
    if not size.upscale:
        scale = min(scale, 1.0)
    width = min(size.width, round(region_w * scale))
    height = min(size.height, round(region_h * scale))
    return width, height


def resolve(request: ImageRequest, width: int, height: int, max_area: int) -> PixelBox:
    left, top, right, bottom = region_area(request.region, width, height)
    out_w, out_h = output_size(request.size, right - left, bottom - top, max_area)
    return PixelBox(left, top, right, bottom, out_w, out_h)


def canonical_path(
    box: PixelBox, request: ImageRequest, width: int, height: int, max_area: int
) -> str:
    """``{region}/{size}/0/{quality}.{format}`` in the spec's canonical form (4.7)."""
    region_w, region_h = box.right - box.left, box.bottom - box.top
    if (box.left, box.top, region_w, region_h) == (0, 0, width, height):
        region = "full"
    else:
        region = f"{box.left},{box.top},{region_w},{region_h}"
    is_max = (box.width, box.height) == max_size(region_w, region_h, max_area, False)
    size = "max" if is_max else f"{box.width},{box.height}"
    return f"{region}/{size}/0/{request.quality}.{request.format}"


# --- info.json -------------------------------------------------------------------------


def info(service_id: str, grid: Grid, max_area: int) -> dict[str, Any]:
    """The Image Information document of one image: its tiles are tilecast's tile grid
    (one scale factor per level), its ``sizes`` the whole image at each level."""
    factors = [grid.scale(z) for z in reversed(range(grid.levels))]
    sizes = []
    for z in range(grid.levels):
        w, h = grid.level_size(z)
        if w * h <= max_area:
            sizes.append({"width": w, "height": h})
    return {
        "@context": CONTEXT,
        "id": service_id,
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": PROFILE,
        "width": grid.size_x,
        "height": grid.size_y,
        "maxArea": max_area,
        "sizes": sizes,
        "tiles": [{"width": grid.tile_width, "height": grid.tile_height, "scaleFactors": factors}],
        "extraFormats": [name for name in FORMATS if name != "jpg"],
        "extraQualities": ["color"],
        "extraFeatures": list(EXTRA_FEATURES),
    }
