"""Region geometry, request parsing and keys (common/regions.py) against large_image's own
``_getRegionBounds``, ``_calculateWidthHeight`` and tile-iterator level choice."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid
from tilecast.common.regionplan import (
    RegionAsk,
    RegionSpec,
    output_size,
    plan_region,
    preferred_level,
)
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest
from tilecast.common.taskprotocol import request_payload

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)
from large_image.tilesource.tileiterator import TileIterator  # noqa: E402
from large_image.tilesource.utilities import _calculateWidthHeight  # noqa: E402

SIZE_X, SIZE_Y = 3000, 2000
META = {"sizeX": SIZE_X, "sizeY": SIZE_Y}


@pytest.fixture(scope="module")
def reference(images: dict[str, Path]) -> large_image.tilesource.TileSource:
    return large_image.open(str(images["pyramid"]))


EDGE_VALUES = (None, 0, 10.4, 10.5, 11.5, 1500, 2999.6, 3500, -1, -700.5, -4000)
SPAN_VALUES = (None, 0, 1, 333.3, 5000, -5)


def _specs() -> list[dict[str, float]]:
    specs = []
    for left, right, width in itertools.product(EDGE_VALUES, EDGE_VALUES, SPAN_VALUES):
        spec = {"left": left, "right": right, "width": width}
        specs.append({k: v for k, v in spec.items() if v is not None})
    return specs


@pytest.mark.parametrize("units", ["base_pixels", "fraction"])
def test_bounds_are_large_images(reference, units: str) -> None:
    """Every combination of left / right / regionWidth (and the same on the other axis):
    the same clipped pixel bounds as large_image, and a 400 exactly where it has none."""
    divide = (SIZE_X, SIZE_Y) if units == "fraction" else (1, 1)
    checked = 0
    for x_spec in _specs():
        y_spec = {"top": 20, "bottom": 1500}
        spec_x = {k: v / divide[0] for k, v in x_spec.items()}
        theirs = reference._getRegionBounds(
            META, units=units, **spec_x, **{k: v / divide[1] for k, v in y_spec.items()}
        )
        ours_spec = RegionSpec(
            left=spec_x.get("left"),
            right=spec_x.get("right"),
            width=spec_x.get("width"),
            top=y_spec["top"] / divide[1],
            bottom=y_spec["bottom"] / divide[1],
            units=units,
        )
        if theirs[2] - theirs[0] <= 0:
            with pytest.raises(BadRequest) as err:
                ours_spec.resolve(SIZE_X, SIZE_Y)
            assert err.value.parameter in ("left", "right", "regionWidth")
        else:
            assert ours_spec.resolve(SIZE_X, SIZE_Y) == tuple(theirs), x_spec
        checked += 1
    assert checked == len(EDGE_VALUES) ** 2 * len(SPAN_VALUES)


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        (RegionSpec(left=3000), "left"),
        (RegionSpec(left=5000, right=6000), "left"),
        (RegionSpec(right=0), "right"),
        (RegionSpec(top=100, bottom=100), "bottom"),
        (RegionSpec(left=10, width=0), "regionWidth"),
        (RegionSpec(top=10, height=-3), "regionHeight"),
        (RegionSpec(top=2.5, units="fraction"), "top"),
        (RegionSpec(right=-3000), "right"),
    ],
)
def test_empty_regions_name_the_parameter(spec: RegionSpec, parameter: str) -> None:
    with pytest.raises(BadRequest) as err:
        spec.resolve(SIZE_X, SIZE_Y)
    assert err.value.parameter == parameter


@pytest.mark.parametrize(
    ("width", "height", "region"),
    [(None, None, (800, 500)), (300, None, (800, 500)), (None, 300, (800, 500)),
     (300, 300, (800, 500)), (2000, 100, (800, 500)), (1, 1, (7000, 3)), (5, None, (3, 9000))],
)  # fmt: skip
def test_output_size_is_large_images(width, height, region) -> None:
    expected = (
        region if not width and not height else _calculateWidthHeight(width, height, *region)[:2]
    )
    assert output_size(width, height, *region) == tuple(expected)


@pytest.mark.parametrize("name", ["pyramid", "single"])
@pytest.mark.parametrize(
    ("region", "output"),
    [({}, {}), ({}, {"maxWidth": 1000}), ({}, {"maxWidth": 90}), ({}, {"maxHeight": 700}),
     ({"left": 101, "top": 57, "right": 2611, "bottom": 1203}, {"maxWidth": 400}),
     ({"left": 101, "top": 57, "right": 2611, "bottom": 1203}, {"maxWidth": 40}),
     ({"left": 10, "top": 10, "width": 50, "height": 40}, {"maxWidth": 300}),
     ({"left": 0.25, "top": 0.1, "right": 0.5, "bottom": 0.6, "units": "fraction"},
      {"maxWidth": 333, "maxHeight": 333})],
)  # fmt: skip
def test_level_and_area_are_large_images(images: dict[str, Path], name, region, output) -> None:
    """The level read and its area, as large_image's tile iterator (with its preference
    for stored levels) picks them, for a full pyramid and for a single-level file."""
    source = large_image.open(str(images[name]))
    info = TileIterator(source, resample=None, region=region, output=output).info
    stored = source._nonemptyLevelsList()
    spec = RegionSpec(
        left=region.get("left"),
        top=region.get("top"),
        right=region.get("right"),
        bottom=region.get("bottom"),
        width=region.get("width"),
        height=region.get("height"),
        units=region.get("units", "base_pixels"),
    )
    plan = plan_region(
        RegionAsk(
            spec,
            output.get("maxWidth"),
            output.get("maxHeight"),
            grid=Grid.from_metadata(source.getMetadata()),
            max_pixels=10**9,
            native=lambda z: stored[z] is not None,
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


def test_native_preference_is_bounded_by_the_read() -> None:
    """A stored finer level is read only while that read fits the region bound."""
    kwargs = {"grid": Grid(40000, 40000, 256, 256, 9)}
    only_full = lambda z: z == 8  # noqa: E731
    near = plan_region(
        RegionAsk(RegionSpec(), 10000, 10000, max_pixels=2 * 10**9, native=only_full, **kwargs)
    )
    assert near.level == 8  # large_image's choice: the stored level, 2 finer
    capped = plan_region(
        RegionAsk(RegionSpec(), 10000, 10000, max_pixels=10**8, native=only_full, **kwargs)
    )
    assert capped.level == 6 and capped.read_width == 10000  # the synthesized level
    assert preferred_level(3, 8, only_full) == 5  # 3+ levels away: steps back by 3
    assert preferred_level(2, 8, only_full) == 2


def test_too_large_outputs_name_the_parameter() -> None:
    kwargs = {"grid": Grid(SIZE_X, SIZE_Y, 256, 256, 5), "max_pixels": 1000 * 1000}
    with pytest.raises(BadRequest) as err:
        plan_region(RegionAsk(RegionSpec(), None, None, **kwargs))
    assert err.value.parameter == "width"
    with pytest.raises(BadRequest) as err:
        plan_region(RegionAsk(RegionSpec(), None, 5000, **kwargs))
    assert err.value.parameter == "height"
    assert plan_region(RegionAsk(RegionSpec(), 1000, None, **kwargs)).out_width == 1000


def test_pixel_location_is_large_images(reference) -> None:
    for left, top in [(0, 0), (10.4, 10.6), (2999.4, 1999.4), (-1, -1), (-0.4, 5), (-1.6, 3)]:
        theirs = reference._getRegionBounds(
            META, left=left, top=top, width=1, height=1, unitsWH="base_pixels"
        )
        expected = theirs[:2] if theirs[2] > theirs[0] and theirs[3] > theirs[1] else None
        assert PixelRequest("s", left, top).locate(SIZE_X, SIZE_Y) == expected
    assert PixelRequest("s", 3000, 5).locate(SIZE_X, SIZE_Y) is None
    assert PixelRequest("s", 2999.6, 5).locate(SIZE_X, SIZE_Y) is None  # rounds to 3000
    assert PixelRequest("s", 0.5, 0.5, units="fraction").locate(SIZE_X, SIZE_Y) == (1500, 1000)


def test_query_parsing_and_canonical_keys() -> None:
    spec = RegionSpec.from_query({"left": "10", "top": "-0", "regionWidth": "5.50"})
    assert spec == RegionSpec(left=10.0, top=0.0, width=5.5)
    same = RegionSpec.from_query({"left": "10.0", "top": "0", "regionWidth": "5.5", "units": ""})
    assert spec.key_part == same.key_part
    assert RegionSpec.from_query({"units": "base"}).units == "base_pixels"
    assert RegionSpec.from_query({"units": "fraction"}).units == "fraction"
    for args, parameter in [
        ({"left": "abc"}, "left"),
        ({"right": "nan"}, "right"),
        ({"bottom": "inf"}, "bottom"),
        ({"regionHeight": "1e300"}, "regionHeight"),
        ({"units": "furlongs"}, "units"),
    ]:
        with pytest.raises(BadRequest) as err:
            RegionSpec.from_query(args)
        assert err.value.parameter == parameter


def test_keys_differ_by_everything_that_changes_the_answer() -> None:
    base = RegionRequest("src", RegionSpec(left=1.0), 100, None)
    variants = [
        base,
        RegionRequest("src", RegionSpec(left=2.0), 100, None),
        RegionRequest("src", RegionSpec(left=1.0, units="fraction"), 100, None),
        RegionRequest("src", RegionSpec(left=1.0), None, 100),
        RegionRequest("src", RegionSpec(left=1.0), 100, None, frame=1),
        RegionRequest("src", RegionSpec(left=1.0), 100, None, style='{"band":1}'),
        RegionRequest("src", RegionSpec(left=1.0), 100, None, encoding=EncodingOptions("PNG")),
    ]
    keys = {request.key(3) for request in variants}
    assert len(keys) == len(variants)
    assert base.key(3).startswith("tc:region:src:3:0:") and base.key(3) != base.key(4)
    hist = HistogramRequest("src")
    hist_keys = {
        hist.key(1),
        HistogramRequest("src", bins=16).key(1),
        HistogramRequest("src", range="round").key(1),
        HistogramRequest("src", range=(0.0, 100.0)).key(1),
        HistogramRequest("src", density=True).key(1),
        HistogramRequest("src", only_min_max=True).key(1),
        HistogramRequest("src", width=512, height=512).key(1),
        HistogramRequest("src", frame=2).key(1),
    }
    assert len(hist_keys) == 8
    assert PixelRequest("src", 1, 2).key(1) != PixelRequest("src", 2, 1).key(1)
    assert BandsRequest("src", 1).key(1) != BandsRequest("src", 0).key(1)


@pytest.mark.parametrize(
    "request_",
    [
        RegionRequest(
            "src", RegionSpec(left=1.5, bottom=-3.0, units="fraction"), 10, None, 2,
            '{"band":1}', EncodingOptions("WEBP", webp_lossless=True),
        ),
        PixelRequest("src", 3.25, 4.0, "fraction", 1),
        HistogramRequest("src", RegionSpec(width=50.0), 64, 32, 1, 12, (0.0, 9.5), True, False),
        HistogramRequest("src", range="round", only_min_max=True),
        BandsRequest("src", 4),
    ],
)  # fmt: skip
def test_payloads_round_trip(request_) -> None:
    payload = request_payload(request_, 5)
    assert type(request_).from_payload(payload["request"]) == request_
    assert payload["generation"] == 5


def test_histogram_query() -> None:
    parsed = HistogramRequest.from_query("src", 0, {})
    assert (parsed.width, parsed.height, parsed.bins, parsed.range) == (2048, 2048, 256, None)
    # large_image's endpoint: a missing end of the range defaults to 0 / 256.
    assert HistogramRequest.from_query("src", 0, {"rangeMax": "100"}).range == (0.0, 100.0)
    assert HistogramRequest.from_query("src", 0, {"rangeMin": "10"}).range == (10.0, 256.0)
    assert HistogramRequest.from_query("src", 0, {"roundRange": "true"}).range == "round"
    parsed = HistogramRequest.from_query(
        "src", 0, {"density": "yes", "onlyMinMax": "1", "width": "100"}
    )
    assert parsed.density and parsed.only_min_max and (parsed.width, parsed.height) == (100, None)
    for args, parameter in [
        ({"bins": "0"}, "bins"),
        ({"bins": "x"}, "bins"),
        ({"bins": "100000000"}, "bins"),
        ({"rangeMin": "5", "rangeMax": "5"}, "rangeMax"),
        ({"rangeMin": "300"}, "rangeMin"),
        ({"density": "maybe"}, "density"),
        ({"width": "0"}, "width"),
    ]:
        with pytest.raises(BadRequest) as err:
            HistogramRequest.from_query("src", 0, args)
        assert err.value.parameter == parameter


def test_histograms_bound_the_analysed_area_not_the_output() -> None:
    """A histogram never resamples: asked at 2048 for a 1000 x 700 image it analyses the
    1000 x 700 pixels, so the bound applies to what it reads."""
    request = HistogramRequest("src")
    plan = request.plan(grid=Grid(1000, 700, 256, 256, 3), max_pixels=1000 * 700)
    assert (plan.level, plan.read_width, plan.read_height) == (2, 1000, 700)
    assert (plan.out_width, plan.out_height) == (2048, 1433)
    with pytest.raises(BadRequest) as err:
        request.plan(grid=Grid(1000, 700, 256, 256, 3), max_pixels=1000 * 699)
    assert err.value.parameter == "width"
    small = HistogramRequest("src", width=300, height=None)
    assert small.plan(grid=Grid(1000, 700, 256, 256, 3), max_pixels=200_000).level == 1
