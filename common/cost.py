"""What a render costs, estimated before it is sent: the per-request budget.

The estimate is ``output pixels x (work per pixel)``, where the work per pixel is one
unit per band of an unstyled image (converting and writing it) or ``STYLE_LAYER_UNITS``
per entry of a style (each entry reads a band, maps it to RGBA and composites it), plus
the encoder's own factor. One unit is about what JPEG-encoding one pixel costs: measured
on 1024 x 1024 RGB with this libvips, ~5 ms per megapixel on one core; relative to it,
PNG ~3, WebP q80 ~10, lossless WebP ~60, AVIF q75 ~85 and AVIF q100 ~900 (the AV1
encoder's effort grows about tenfold from quality 75 to 100).

The api checks it (no numpy, no pyvips) before anything is dispatched and refuses a
request beyond ``TILECAST_MAX_REQUEST_COST`` with a 400 naming the budget: with the
default (2e9 units, about 10 s of one core) a 4096 x 4096 region is accepted as JPEG,
PNG, WebP or AVIF q75, or with a 16-entry style, and refused with a 64-entry style or as
AVIF q100.
"""

from __future__ import annotations

import json

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import OverBudget
from tilecast.common.style import style_entries

STYLE_LAYER_UNITS = 4
_CODEC_UNITS = {"JPEG": 1.0, "TIFF": 1.0, "PNG": 3.0, "WEBP": 10.0}
WEBP_LOSSLESS_UNITS = 60.0
AVIF_UNITS = 85.0  # at quality 75 and below
AVIF_UNITS_PER_25_QUALITY = 10.0  # how much more effort every 25 quality points above 75


def codec_units(encoding: EncodingOptions) -> float:
    """Work per pixel of the encoder ``encoding`` names."""
    if encoding.format == "AVIF":
        above = max(0, encoding.avif_quality - 75)
        return AVIF_UNITS * AVIF_UNITS_PER_25_QUALITY ** (above / 25)
    if encoding.format == "WEBP" and encoding.webp_lossless:
        return WEBP_LOSSLESS_UNITS
    return _CODEC_UNITS.get(encoding.format, 1.0)


def layers(style: str | None, bands: int) -> int:
    """Work per pixel before encoding: the bands of an unstyled image, or
    ``STYLE_LAYER_UNITS`` per entry of the (canonical, validated) style."""
    if style is None:
        return max(1, bands)
    return STYLE_LAYER_UNITS * len(style_entries(json.loads(style)))


def estimate(pixels: int, style: str | None, bands: int, encoding: EncodingOptions) -> int:
    """Cost units of rendering ``pixels`` output pixels of an image of ``bands`` bands
    with ``style`` into ``encoding``."""
    return int(pixels * (layers(style, bands) + codec_units(encoding)))


def check_budget(
    pixels: int, style: str | None, bands: int, encoding: EncodingOptions, budget: int
) -> int:
    """The estimate; a 400 naming the budget when it is past ``budget`` (0 = none)."""
    cost = estimate(pixels, style, bands, encoding)
    if budget > 0 and cost > budget:
        raise OverBudget(
            f"this request would cost about {cost:.3g} units ({pixels} pixels x "
            f"{layers(style, bands)} style/band units + {codec_units(encoding):g} for "
            f"{encoding.format}), more than the per-request budget of {budget:.3g} "
            "(TILECAST_MAX_REQUEST_COST); ask fewer pixels, fewer style bands or a "
            "cheaper encoding"
        )
    return cost


def fitted_pixels(width: int, height: int, size_x: int, size_y: int) -> int:
    """Output pixels of an image of ``size_x`` x ``size_y`` fitted into ``width`` x
    ``height`` (0 = unconstrained), aspect kept (thumbnails)."""
    if size_x <= 0 or size_y <= 0:
        return width * height
    if width and height:
        scale = min(width / size_x, height / size_y)
    elif width:
        scale = width / size_x
    elif height:
        scale = height / size_y
    else:
        scale = 1.0
    return max(1, round(size_x * scale)) * max(1, round(size_y * scale))
