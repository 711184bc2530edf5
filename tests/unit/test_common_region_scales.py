"""Region units, output magnification, ``fill`` and histogram ``resample``: parsing,
keys and geometry (common/regionparams.py, common/regionplan.py, common/fill.py) against
large_image's own ``_getRegionBounds``, ``getLevelForMagnification`` and tile iterator, on a pyramid
that knows its pixel size (4000 px/mm: 0.00025 mm, magnification 40)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tilecast.common.errors import BadRequest
from tilecast.common.fill import fill_color, fill_key_part, parse_fill
from tilecast.common.grid import Grid
from tilecast.common.regionparams import parse_resample, parse_units
from tilecast.common.regionplan import Optics, OutputScale, RegionAsk, RegionSpec, plan_region
from tilecast.common.regions import HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.taskprotocol import request_payload
from tilecast.common.tiles import ThumbnailRequest

large_image = pytest.importorskip("large_image")
from large_image.tilesource.tileiterator import TileIterator  # noqa: E402

SIZE_X, SIZE_Y = 1000, 700
MM = 0.00025


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tilecast.sample import sample_image, write_tiff

    path = tmp_path_factory.mktemp("scales") / "pyramid.tiff"
    return write_tiff(sample_image(SIZE_X, SIZE_Y), path, pyramid=True, pixels_per_mm=1 / MM)


@pytest.fixture(scope="module")
def reference(pyramid: Path) -> Any:
    return large_image.open(str(pyramid))


@pytest.fixture(scope="module")
def optics(reference: Any) -> Optics:
    return Optics.of(reference.getMetadata())


def test_optics_are_the_metadata(optics: Optics) -> None:
    assert optics == Optics(MM, MM, 40.0)
    assert Optics.of({"mm_x": None, "magnification": 0}) == Optics()


@pytest.mark.parametrize(
    "units",
    ["base", "pixels", "mag_pixels", "mm", "um", "\u03bcm", "microns", "nm", "m", "km",
     "fraction"],
)  # fmt: skip
def test_every_unit_name_is_large_images(units: str) -> None:
    from large_image.constants import TileInputUnits

    assert parse_units({"units": units}) == TileInputUnits[units]


REGIONS_IN_UNITS = [
    ({"left": 0.01, "top": 0.02, "right": 0.2, "bottom": 0.15, "units": "mm"}, {}),
    ({"left": 10, "top": 20, "width": 100, "height": 50, "units": "um"}, {}),
    ({"left": 30000, "top": 0, "right": -20000, "bottom": 100000, "units": "nm"}, {}),
    ({"left": 0.00001, "right": 0.0002, "units": "m"}, {}),
    ({"left": 10, "top": 10, "right": 200, "bottom": 100, "units": "mag_pixels"},
     {"magnification": 10}),
    ({"left": 10, "top": 10, "right": 200, "bottom": 100, "units": "mag_pixels"}, {}),
    ({"left": 0.01, "top": 0.01, "right": 0.1, "bottom": 0.1, "units": "mm"},
     {"magnification": 20}),
    ({"left": 0, "top": 0, "right": 500, "bottom": 500}, {"magnification": 20}),
    ({"left": 0, "top": 0, "right": 500, "bottom": 500}, {"mm_x": 0.001}),
    ({"left": 0, "top": 0, "right": 500, "bottom": 500}, {"mm_x": 0.001, "mm_y": 0.0005}),
    ({"left": 100, "top": 100, "right": 700, "bottom": 600}, {"magnification": 13}),
    ({"left": 100, "top": 100, "right": 300, "bottom": 250}, {"magnification": 80}),
    ({}, {"magnification": 10, "exact": True}),
    ({"left": 0, "top": 0, "right": 0.1, "bottom": 0.1, "units": "mm"}, {"magnification": 5}),
    ({}, {"magnification": 10}),
]  # fmt: skip


@pytest.mark.parametrize(("region", "scale"), REGIONS_IN_UNITS)
def test_units_and_magnifications_are_large_images(
    reference: Any, optics: Optics, region: dict[str, Any], scale: dict[str, Any]
) -> None:
    """Area, level and output size, as its tile iterator computes them."""
    info = TileIterator(reference, resample=None, region=region, scale=scale).info
    stored = reference._nonemptyLevelsList()
    spec = RegionSpec(
        **{k: region.get(k) for k in ("left", "top", "right", "bottom", "width", "height")},
        units=region.get("units", "base_pixels"),
    )
    plan = plan_region(
        RegionAsk(
            spec,
            None,
            None,
            grid=Grid.from_metadata(reference.getMetadata()),
            max_pixels=10**9,
            native=lambda z: stored[z] is not None,
            optics=optics,
            scale=OutputScale(**scale),
        )
    )
    theirs = info["region"]
    assert plan.level == info["level"]
    assert (plan.left, plan.top, plan.right, plan.bottom) == (
        theirs["left"], theirs["top"], theirs["right"], theirs["bottom"],
    )  # fmt: skip
    assert (plan.out_width, plan.out_height) == (
        int(info["output"]["width"]), int(info["output"]["height"]),
    )  # fmt: skip
    assert plan.scale == pytest.approx(info["requestedScale"])


def test_units_the_image_cannot_convert_name_units() -> None:
    kwargs = {"grid": Grid(SIZE_X, SIZE_Y, 256, 256, 3), "max_pixels": 10**7}
    with pytest.raises(BadRequest) as err:  # no pixel size
        plan_region(RegionAsk(RegionSpec(right=0.1, units="mm"), None, None, **kwargs))
    assert err.value.parameter == "units"
    with pytest.raises(BadRequest) as err:  # large_image: "No magnification to use for units"
        plan_region(RegionAsk(RegionSpec(right=10, units="mag_pixels"), 100, None, **kwargs))
    assert err.value.parameter == "units"
    # Without metadata, a magnification changes nothing (large_image: the top level).
    plain = plan_region(
        RegionAsk(RegionSpec(), None, None, scale=OutputScale(magnification=5), **kwargs)
    )
    assert (plain.level, plain.out_width, plain.out_height) == (2, SIZE_X, SIZE_Y)


def test_exact_needs_a_stored_level(optics: Optics) -> None:
    kwargs = {"grid": Grid(SIZE_X, SIZE_Y, 256, 256, 3), "max_pixels": 10**7}
    exact = plan_region(
        RegionAsk(
            RegionSpec(), None, None, optics=optics, scale=OutputScale(20, exact=True), **kwargs
        )
    )
    assert (exact.level, exact.out_width) == (1, 500)
    for scale in (OutputScale(13, exact=True), OutputScale(80, exact=True)):
        with pytest.raises(BadRequest) as err:
            plan_region(RegionAsk(RegionSpec(), None, None, optics=optics, scale=scale, **kwargs))
        assert err.value.parameter == "exact"
    with pytest.raises(BadRequest) as err:  # level 1 is not stored: a finer one is read
        plan_region(RegionAsk(
            RegionSpec(), None, None, optics=optics, scale=OutputScale(20, exact=True),
            native=lambda z: z == 2, **kwargs,
        ))  # fmt: skip
    assert err.value.parameter == "exact"


def test_magnified_outputs_are_bounded() -> None:
    optics = Optics(MM, MM, 40.0)
    kwargs = {"grid": Grid(SIZE_X, SIZE_Y, 256, 256, 3), "optics": optics}
    with pytest.raises(BadRequest) as err:
        plan_region(
            RegionAsk(RegionSpec(), None, None, max_pixels=10**6, scale=OutputScale(160), **kwargs)
        )
    assert err.value.parameter == "magnification"
    with pytest.raises(BadRequest) as err:  # the letterboxed size counts
        plan_region(RegionAsk(RegionSpec(), 900, 5000, max_pixels=10**6, fill=True, **kwargs))
    assert err.value.parameter == "width"


def test_scale_parsing_and_keys() -> None:
    assert OutputScale.from_query({}) == OutputScale()
    assert OutputScale.from_query({"magnification": "0", "exact": "true"}) == OutputScale()
    assert OutputScale.from_query({"mm_x": "0.001", "exact": "yes"}) == OutputScale(
        mm_x=0.001, exact=True
    )
    for args, parameter in [({"magnification": "-2"}, "magnification"), ({"mm_y": "x"}, "mm_y")]:
        with pytest.raises(BadRequest) as err:
            OutputScale.from_query(args)
        assert err.value.parameter == parameter
    base = RegionRequest("s", RegionSpec(right=500.0))
    at_20 = RegionRequest("s", RegionSpec(right=500.0), scale=OutputScale(20.0))
    exact = RegionRequest("s", RegionSpec(right=500.0), scale=OutputScale(20.0, exact=True))
    assert len({base.key(1), at_20.key(1), exact.key(1)}) == 3
    # A width or height wins over a magnification, as in large_image: one key.
    sized = RegionRequest("s", RegionSpec(right=500.0), 100, None, scale=OutputScale(20.0))
    assert sized.key(1) == RegionRequest("s", RegionSpec(right=500.0), 100, None).key(1)
    mm = RegionRequest("s", RegionSpec(right=0.1, units="mm"))
    assert mm.key(1) != RegionRequest("s", RegionSpec(right=0.1, units="um")).key(1)
    assert (
        RegionSpec.from_query({"units": "millimeters"}).key_part == RegionSpec(units="mm").key_part
    )


def test_pixels_in_units(optics: Optics) -> None:
    assert PixelRequest("s", 0.1, 0.05, units="mm").locate(SIZE_X, SIZE_Y, optics) == (400, 200)
    assert PixelRequest("s", 7, 9, units="pixels").locate(SIZE_X, SIZE_Y, optics) == (7, 9)
    with pytest.raises(BadRequest) as err:
        PixelRequest("s", 0.1, 0.1, units="mm").locate(SIZE_X, SIZE_Y)
    assert err.value.parameter == "units"


# --- fill --------------------------------------------------------------------------------


def test_fill_parsing() -> None:
    assert parse_fill({"fill": "#ff0000"}, 200, 200) == "#ff0000ff"
    assert parse_fill({"fill": "red"}, 200, 200) == parse_fill({"fill": "RED"}, 200, 200)
    assert parse_fill({"fill": "corner:rgba(0, 0, 255, 128)"}, 5, 5) == "corner:#0000ff80"
    # Ignored by large_image: no colour, or not both sides.
    for args, width, height in [({"fill": "none"}, 9, 9), ({}, 9, 9), ({"fill": "red"}, 9, None)]:
        assert parse_fill(args, width, height) is None
    with pytest.raises(BadRequest) as err:
        parse_fill({"fill": "blurple"}, 9, 9)
    assert err.value.parameter == "fill"
    assert fill_color("corner:#0000ff80") == ((0, 0, 255, 128), True)
    assert ":" not in fill_key_part("corner:#0000ff80")


def test_fill_keys() -> None:
    red = RegionRequest("s", RegionSpec(), 300, 300, fill="#ff0000ff")
    assert red.key(1) != RegionRequest("s", RegionSpec(), 300, 300).key(1)
    assert red.key(1) != RegionRequest("s", RegionSpec(), 300, 300, fill="corner:#ff0000ff").key(1)
    # One side only: fill changes nothing, so it is not part of the key.
    one_side = RegionRequest("s", RegionSpec(), 300, None, fill="#ff0000ff")
    assert one_side.fill is None
    assert one_side.key(1) == RegionRequest("s", RegionSpec(), 300, None).key(1)
    thumb = ThumbnailRequest("s", 200, 200, fill="#ff0000ff")
    assert thumb.key(1) != ThumbnailRequest("s", 200, 200).key(1)
    assert ThumbnailRequest("s", 200, 0, fill="#ff0000ff").key(1) == ThumbnailRequest(
        "s", 200, 0
    ).key(1)
    assert ":" not in thumb.key(1).split(":", 8)[-1].split(":")[0]  # the fit part


@pytest.mark.parametrize(
    "request_",
    [
        RegionRequest("s", RegionSpec(right=0.5, units="mm"), 10, 20, fill="corner:#00ff00ff"),
        RegionRequest("s", RegionSpec(), scale=OutputScale(10.0, None, 0.001, exact=True)),
        HistogramRequest("s", width=256, height=256, resample=True),
        HistogramRequest(
            "s", width=None, height=None, resample=True, scale=OutputScale(mm_x=0.001)
        ),
    ],
)
def test_new_parameters_travel_in_payloads(request_: Any) -> None:
    payload = request_payload(request_, 2)
    assert type(request_).from_payload(payload["request"]) == request_
    thumb = ThumbnailRequest("s", 20, 30, fill="#ff000080")
    assert ThumbnailRequest.from_payload(thumb.to_payload()) == thumb


# --- histogram resample ------------------------------------------------------------------


def test_histogram_resample_parsing_and_keys() -> None:
    assert parse_resample({}) is True
    for raw, value in [("false", False), ("0", False), ("off", False), ("true", True),
                       ("3", True), ("yes", True)]:  # fmt: skip
        assert parse_resample({"resample": raw}) is value
    with pytest.raises(BadRequest) as err:
        parse_resample({"resample": "lanczos"})
    assert err.value.parameter == "resample"
    sized = HistogramRequest.from_query("s", 0, {"width": "256", "height": "256"})
    assert sized.resample
    # Neither side: the area at full resolution (large_image's default), never resampled.
    assert not HistogramRequest.from_query("s", 0, {"resample": "true"}).resample
    off = HistogramRequest.from_query("s", 0, {"width": "256", "resample": "false"})
    assert off.key(1) != HistogramRequest.from_query("s", 0, {"width": "256"}).key(1)


def test_histogram_scale_is_large_images(reference: Any) -> None:
    """The requested scale its resampling tiles use: 1000 x 700 asked at 256 reads the
    500 x 350 level and shrinks it by 1.953125."""
    request = HistogramRequest("s", width=256, height=256, resample=True)
    plan = request.plan(grid=Grid(SIZE_X, SIZE_Y, 256, 256, 3), max_pixels=10**7)
    info = TileIterator(reference, output={"maxWidth": 256, "maxHeight": 256}).info
    assert (plan.level, plan.scale) == (info["level"], info["requestedScale"])
    assert (plan.out_width, plan.out_height) == (256, 179)
    with pytest.raises(BadRequest) as err:  # a resampled output is bounded too
        HistogramRequest("s", width=9000, height=9000, resample=True).plan(
            grid=Grid(SIZE_X, SIZE_Y, 256, 256, 3), max_pixels=10**7
        )
    assert err.value.parameter == "width"


@pytest.mark.parametrize(
    "region",
    [
        {"left": 0.01, "top": 0.02, "width": 200, "height": 100, "units": "mm",
         "unitsWH": "base_pixels"},
        {"left": 10, "top": 20, "right": 500, "bottom": 400, "width": 0.05, "height": 0.02,
         "unitsWH": "mm"},
        {"right": -10, "bottom": -10, "width": 0.25, "height": 0.5, "unitsWH": "fraction"},
        {"left": 100, "right": 400, "top": 50, "bottom": 300, "unitsWH": "um"},
    ],
)  # fmt: skip
def test_units_wh_are_large_images(reference: Any, optics: Optics, region: dict) -> None:
    theirs = reference._getRegionBounds(reference.getMetadata(), **region)
    args = {
        "regionWidth" if k == "width" else "regionHeight" if k == "height" else k: str(v)
        for k, v in region.items()
    }
    spec = RegionSpec.from_query(args)
    assert spec.resolve(SIZE_X, SIZE_Y, optics) == tuple(theirs)
    assert RegionSpec.from_payload(spec.to_payload()) == spec


def test_units_wh_parsing_and_keys() -> None:
    assert RegionSpec.from_query({"unitsWH": "microns"}).units_wh == "um"
    assert RegionSpec.from_query({"unitsWH": ""}).units_wh is None
    with pytest.raises(BadRequest) as err:
        RegionSpec.from_query({"unitsWH": "feet"})
    assert err.value.parameter == "unitsWH"
    plain = RegionSpec(left=1.0, right=5.0, width=2.0)
    assert (
        plain.key_part
        != RegionSpec(left=1.0, right=5.0, width=2.0, units_wh="base_pixels").key_part
    )
