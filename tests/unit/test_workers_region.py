"""Regions, pixels, histograms and band information rendered in-process (workers/region.py,
workers/histogram.py) against large_image's getRegion / getPixel / histogram /
getBandInformation on the same files."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import pytest

from tests.unit.conftest import generation_of, register_source
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.regionplan import RegionSpec
from tilecast.common.regions import BandsRequest, HistogramRequest, PixelRequest, RegionRequest

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)


def _decode(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, np.newaxis]


@pytest.mark.parametrize(
    ("name", "region", "width"),
    [
        ("pyramid", {"left": 255, "top": 1, "right": 769, "bottom": 513}, None),  # tile edges
        ("pyramid", {"left": 2800, "top": 1900}, None),  # the last, partial tiles
        ("odd_lzw", {"left": 3, "top": 5, "right": 1498, "bottom": 998}, 301),
        ("gray", {"left": 100, "top": 50, "right": 600, "bottom": 400}, 77),
        ("rgba", {}, 123),
        ("uint16", {"left": 17, "top": 9, "right": 590, "bottom": 333}, 100),
        ("frames", {"left": 10, "top": 10, "right": 690, "bottom": 470}, 200),
    ],
)
def test_regions_equal_large_images(
    renderer: Renderer,
    images: dict[str, Path],
    wk_images: dict[str, Path],
    name: str,
    region: dict[str, int],
    width: int | None,
) -> None:
    """Same level, same area, same resampling: PNG pixels equal large_image's."""
    path = images.get(name) or wk_images[name]
    source_id = register_source(renderer, path)
    frame = 1 if name == "frames" else 0
    spec = RegionSpec(**{k: float(v) for k, v in region.items()})
    request = RegionRequest(source_id, spec, width, None, frame, None, EncodingOptions("PNG"))
    from tilecast.workers.region import render_region

    ours = _decode(render_region(renderer, request, generation_of(renderer, source_id)))
    output = {"maxWidth": width} if width else {}
    theirs_data, _ = large_image.open(str(path)).getRegion(
        region=region, output=output, encoding="PNG", frame=frame
    )
    theirs = _decode(theirs_data)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_region_bounds_and_frames_are_checked(renderer: Renderer, images: dict[str, Path]) -> None:
    from tilecast.common.errors import TileOutOfRange
    from tilecast.workers.region import render_region

    source_id = register_source(renderer, images["pyramid"])
    with pytest.raises(BadRequest) as err:
        render_region(
            renderer,
            RegionRequest(source_id, RegionSpec(left=3000.0)),
            generation_of(renderer, source_id),
        )
    assert err.value.parameter == "left"
    with pytest.raises(BadRequest) as err:
        render_region(
            renderer,
            RegionRequest(source_id, RegionSpec(), 50000, None),
            generation_of(renderer, source_id),
        )
    assert err.value.parameter == "width"
    with pytest.raises((BadRequest, TileOutOfRange)) as err:
        render_region(
            renderer, RegionRequest(source_id, frame=3), generation_of(renderer, source_id)
        )
    assert err.value.parameter == "frame"


def test_pixels(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    from tilecast.workers.region import pixel_values

    for name, frame in [("frames", 1), ("uint16", 0), ("rgba", 0), ("gray", 0)]:
        source_id = register_source(renderer, wk_images[name])
        reference = large_image.open(str(wk_images[name]))
        for left, top in [(0, 0), (299.5, 200.4), (-1, -1), (599.6, 0)]:
            ours = pixel_values(
                renderer,
                PixelRequest(source_id, left, top, frame=frame),
                generation_of(renderer, source_id),
            )
            theirs = reference.getPixel(region={"left": left, "top": top}, frame=frame)
            assert ours == dict(theirs), (name, left, top)


def _their_histogram(path: Path, **kwargs) -> list[dict]:
    """large_image's histogram, cast as its girder endpoint casts it."""
    result = large_image.open(str(path)).histogram(resample=False, **kwargs)["histogram"]
    for entry in result:
        for key in ("bin_edges", "hist", "range"):
            entry[key] = [float(v) for v in entry[key]]
        for key in ("min", "max", "samples"):
            entry[key] = float(entry[key])
    return result


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # large_image's 0 / 0
@pytest.mark.parametrize(
    ("ours_kwargs", "their_kwargs"),
    [
        ({}, {}),
        ({"bins": 10}, {"bins": 10}),
        ({"range": "round", "bins": 512}, {"range": "round", "bins": 512}),
        ({"range": (50.0, 150.0), "density": True}, {"range": [50, 150], "density": True}),
        (
            {"spec": RegionSpec(left=100.0, top=50.0, right=400.0, bottom=300.0), "width": 100,
             "height": None},
            {"region": {"left": 100, "top": 50, "right": 400, "bottom": 300},
             "output": {"maxWidth": 100}},
        ),
    ],
)  # fmt: skip
def test_histograms_equal_large_images(
    renderer: Renderer, wk_images: dict[str, Path], ours_kwargs: dict, their_kwargs: dict
) -> None:
    from tilecast.workers.histogram import histogram

    for name in ("rgba", "uint16"):
        path = wk_images[name]
        source_id = register_source(renderer, path)
        ours = histogram(
            renderer, HistogramRequest(source_id, **ours_kwargs), generation_of(renderer, source_id)
        )
        their_kwargs = {"output": {"maxWidth": 2048, "maxHeight": 2048}, **their_kwargs}
        theirs = _their_histogram(path, **their_kwargs)
        assert len(ours) == len(theirs)
        for mine, their in zip(ours, theirs, strict=True):
            assert set(mine) == set(their)
            if their["samples"] == 0:
                # No sample in range: large_image divides 0 by 0 for ``density`` and
                # answers NaN (not JSON); tilecast keeps the zero counts.
                assert their["density"] and all(math.isnan(v) for v in their["hist"])
                their["hist"] = [0.0] * len(their["hist"])
            for key, value in their.items():
                assert mine[key] == pytest.approx(value), (name, key)


def test_only_min_max(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    from tilecast.workers.histogram import histogram

    path = wk_images["rgba"]
    source_id = register_source(renderer, path)
    ours = histogram(
        renderer,
        HistogramRequest(source_id, only_min_max=True),
        generation_of(renderer, source_id),
    )
    theirs = large_image.open(str(path)).histogram(
        onlyMinMax=True, output={"maxWidth": 2048, "maxHeight": 2048}, resample=False
    )
    for key in ("min", "max", "mean", "stdev"):
        assert ours[key] == pytest.approx([float(v) for v in theirs[key]])


def test_band_information_per_frame(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    """large_image keeps the first answer of ``getBandInformation`` on its tile source
    (``self._bandInfo``, whatever the frame) and shares tile sources between opens:
    asked for frame 1 after frame 0 it answers frame 0's statistics -- a bug. Each
    frame is compared against an uncached source instead."""
    from tilecast.workers.histogram import band_information

    path = wk_images["frames"]
    source_id = register_source(renderer, path)
    answers = []
    for frame in (0, 1):
        ours = band_information(
            renderer, BandsRequest(source_id, frame), generation_of(renderer, source_id)
        )
        theirs = large_image.open(str(path), noCache=True).getBandInformation(
            statistics=True, frame=frame
        )
        assert set(ours) == {str(band) for band in theirs}
        for band, info in theirs.items():
            mine = ours[str(band)]
            assert mine["interpretation"] == info["interpretation"]
            for key in ("min", "max", "mean", "stdev"):
                assert mine[key] == pytest.approx(float(info[key]))
        answers.append(ours)
    assert answers[0] != answers[1]  # the second frame is the inverse of the first
    shared = large_image.open(str(path), noCache=True)
    shared.getBandInformation(statistics=True, frame=0)
    stale = shared.getBandInformation(statistics=True, frame=1)
    assert float(stale[1]["mean"]) == pytest.approx(answers[0]["1"]["mean"])


def test_json_answers_send_nan_and_infinities_as_null() -> None:
    from tilecast.workers.region import json_bytes

    value = {"value": [1.5, float("nan")], "min": float("-inf"), "n": 3, "t": (float("inf"),)}
    assert json_bytes(value) == b'{"value":[1.5,null],"min":null,"n":3,"t":[null]}'
