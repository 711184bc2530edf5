"""The query parameters of regions, pixels and histograms, declared once (common/params.py)
and parsed here: what the api reads at the edge and ``/openapi.json`` documents.

Units are large_image's ``TileInputUnits`` (all but its geospatial projections):
``base_pixels`` (full-resolution pixels), ``fraction`` (0-1 of the image), ``mm``, ``um``,
``nm``, ``m``, ``km`` (lengths, by the image's ``mm_x``/``mm_y``) and ``mag_pixels``
(pixels at the output magnification). Geometry is in common/regionplan.py, the request
types in common/regions.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from tilecast.common.errors import BadRequest
from tilecast.common.params import BOOLEAN, INTEGER, NUMBER, Param

# large_image's TileInputUnits (all but its geospatial projections): name -> canonical.
UNITS: dict[str, str] = {
    "": "base_pixels",
    "base": "base_pixels",
    "base_pixel": "base_pixels",
    "base_pixels": "base_pixels",
    **dict.fromkeys(
        ("pixel", "pixels", "mag_pixel", "mag_pixels", "magnification_pixel",
         "magnification_pixels"),
        "mag_pixels",
    ),
    **dict.fromkeys(("nm", "nanometer", "nanometers"), "nm"),
    **dict.fromkeys(("um", "\u03bcm", "micrometer", "micrometers", "micron", "microns"), "um"),
    **dict.fromkeys(("mm", "millimeter", "millimeters"), "mm"),
    **dict.fromkeys(("m", "meter", "meters"), "m"),
    **dict.fromkeys(("km", "kilometer", "kilometers"), "km"),
    "fraction": "fraction",
}  # fmt: skip
# large_image's mmConversionDict: a length unit -> how many of it make a millimetre.
PER_MM = {"nm": 1e6, "um": 1e3, "mm": 1.0, "m": 1e-3, "km": 1e-6}
# Coordinates beyond this are not an image (and would overflow the pixel arithmetic).
MAX_COORDINATE = 1e12
MAX_OUTPUT_SIDE = 2**31 - 1
DEFAULT_BINS = 256
MAX_BINS = 65536


def _coordinate(name: str, doc: str) -> Param:
    return Param(name, doc, NUMBER, low=-MAX_COORDINATE, high=MAX_COORDINATE)


def _scale(name: str, doc: str) -> Param:
    # 0 means not given, as in large_image; a negative one is refused.
    return Param(name, doc, NUMBER, low=0, high=MAX_COORDINATE)


def _units(name: str, doc: str) -> Param:
    return Param(name, doc, choices=tuple(sorted(UNITS)), default="")


LEFT = _coordinate("left", "left edge")
TOP = _coordinate("top", "top edge")
RIGHT = _coordinate("right", "right edge")
BOTTOM = _coordinate("bottom", "bottom edge")
REGION_WIDTH = _coordinate("regionWidth", "width (instead of right)")
REGION_HEIGHT = _coordinate("regionHeight", "height (instead of bottom)")
UNITS_PARAM = _units("units", "units of the region's coordinates (default base_pixels)")
UNITS_WH = _units("unitsWH", "other units for regionWidth and regionHeight (default: units)")
REGION_PARAMS = (LEFT, TOP, RIGHT, BOTTOM, REGION_WIDTH, REGION_HEIGHT, UNITS_PARAM, UNITS_WH)
MAGNIFICATION = _scale("magnification", "output magnification (when neither width nor height)")
MM_X = _scale("mm_x", "output mm per pixel, horizontally")
MM_Y = _scale("mm_y", "output mm per pixel, vertically")
EXACT = Param(
    "exact",
    "only a stored level of exactly that magnification or pixel size (else a 400)",
    BOOLEAN,
    default=False,
)
RESAMPLE = Param(
    "resample",
    "histograms: resample to width x height (true, false or an integer; default true); "
    "regions: ignored",
    default="true",
)
SCALE_PARAMS = (MAGNIFICATION, MM_X, MM_Y, EXACT, RESAMPLE)
OUTPUT_WIDTH = Param(
    "width", "output width in pixels (fit, aspect kept)", INTEGER, low=1, high=MAX_OUTPUT_SIDE
)
OUTPUT_HEIGHT = Param(
    "height", "output height in pixels (fit, aspect kept)", INTEGER, low=1, high=MAX_OUTPUT_SIDE
)
OUTPUT_SIZE = (OUTPUT_WIDTH, OUTPUT_HEIGHT)
BINS = Param("bins", "bins per band", INTEGER, default=DEFAULT_BINS, low=1, high=MAX_BINS)
RANGE_MIN = _coordinate("rangeMin", "lower end of the binned range (default 0)")
RANGE_MAX = _coordinate("rangeMax", "upper end of the binned range (default 256)")
ROUND_RANGE = Param("roundRange", "round the range to integers", BOOLEAN, default=False)
DENSITY = Param("density", "densities instead of counts", BOOLEAN, default=False)
ONLY_MIN_MAX = Param("onlyMinMax", "only each band's min and max", BOOLEAN, default=False)
HISTOGRAM_PARAMS = (BINS, RANGE_MIN, RANGE_MAX, ROUND_RANGE, DENSITY, ONLY_MIN_MAX)


def parse_units(args: Mapping[str, str], param: Param = UNITS_PARAM) -> str:
    raw = args.get(param.name) or param.default
    units = UNITS.get(raw.lower())
    if units is None:
        names = ", ".join(sorted(set(UNITS.values())))
        raise BadRequest(f"unknown {param.name} {raw!r}; one of {names}", parameter=param.name)
    return units


def positive_number(args: Mapping[str, str], param: Param) -> float | None:
    """A magnification or pixel size; 0 means not given, as in large_image."""
    value = param.number(args)
    if value is None or value == 0:
        return None
    if value < 0:
        raise BadRequest(f"{param.name} must be positive, not {value:g}", parameter=param.name)
    return value


def parse_output_side(args: Mapping[str, str], name: str) -> int | None:
    """``width`` or ``height`` of a region or histogram; None when not given."""
    return (OUTPUT_WIDTH if name == OUTPUT_WIDTH.name else OUTPUT_HEIGHT).integer(args)


def parse_resample(args: Mapping[str, str]) -> bool:
    """large_image's ``resample`` (true / false / on / off / yes / no or an integer);
    its tiles take any true value as LANCZOS, so it is a boolean here. Absent: true."""
    raw = args.get(RESAMPLE.name) or RESAMPLE.default
    text = raw.strip().lower()
    if text in ("true", "on", "yes"):
        return True
    if text in ("false", "off", "no"):
        return False
    try:
        return int(text) != 0
    except ValueError:
        raise BadRequest(
            f"resample must be true, false or an integer, not {raw!r}", parameter=RESAMPLE.name
        ) from None
