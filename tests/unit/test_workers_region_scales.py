"""Regions at a magnification or in lengths, letterboxed regions and thumbnails, and
resampled histograms, rendered in-process against large_image's getRegion /
getThumbnail / histogram on the same files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import pytest

from tests import largeimage_reference
from tests.unit.conftest import generation_of, register_source
from tilecast.common.encoding import EncodingOptions
from tilecast.common.regionplan import OutputScale, RegionSpec
from tilecast.common.regions import HistogramRequest, RegionRequest
from tilecast.common.tiles import ThumbnailRequest

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer

large_image = pytest.importorskip("large_image")


@pytest.fixture(autouse=True)
def large_image_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    largeimage_reference.pin(monkeypatch)


large_image.config.setConfig("icc_correction", False)

PNG = EncodingOptions("PNG")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1000 x 700, three stored levels, 0.00025 mm pixels (magnification 40)."""
    from tilecast.sample import sample_image, write_tiff

    path = tmp_path_factory.mktemp("measured") / "pyramid.tiff"
    return write_tiff(sample_image(1000, 700), path, pyramid=True, pixels_per_mm=4000)


def _decode(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, np.newaxis]


def _within_one(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("region", "scale"),
    [
        ({"left": 0, "top": 0, "right": 500, "bottom": 500}, {"magnification": 20}),
        ({"left": 0, "top": 0, "right": 500, "bottom": 500}, {"mm_x": 0.001}),
        ({"left": 100, "top": 50, "right": 700, "bottom": 650}, {"magnification": 13}),
        ({"left": 0.02, "top": 0.01, "right": 0.2, "bottom": 0.15, "units": "mm"}, {}),
        ({"left": 10, "top": 10, "right": 200, "bottom": 120, "units": "mag_pixels"},
         {"magnification": 10}),
        ({"left": 100, "top": 100, "right": 200, "bottom": 180}, {"magnification": 80}),
    ],
)  # fmt: skip
def test_regions_in_units_and_magnifications_equal_large_images(
    renderer: Renderer, measured: Path, region: dict[str, Any], scale: dict[str, Any]
) -> None:
    from tilecast.workers.region import render_region

    source_id = register_source(renderer, measured)
    fields = ("left", "top", "right", "bottom")
    spec = RegionSpec(
        **{k: float(region[k]) for k in fields}, units=region.get("units", "base_pixels")
    )
    request = RegionRequest(source_id, spec, encoding=PNG, scale=OutputScale(**scale))
    ours = _decode(render_region(renderer, request, generation_of(renderer, source_id)))
    data, _ = large_image.open(str(measured)).getRegion(region=region, scale=scale, encoding="PNG")
    _within_one(ours, _decode(data))


@pytest.mark.parametrize(
    ("spec", "width", "height", "fill", "encoding"),
    [
        (RegionSpec(right=500.0, bottom=250.0), 300, 300, "#ff0000ff", "JPEG"),
        (RegionSpec(right=500.0, bottom=250.0), 300, 300, "#00ff0080", "PNG"),
        (RegionSpec(right=251.0, bottom=500.0), 301, 200, "corner:#0000ffff", "PNG"),
        (RegionSpec(right=100.0, bottom=100.0), 100, 100, "#ff0000ff", "PNG"),  # no padding
    ],
)
def test_letterboxed_regions_equal_large_images(
    renderer: Renderer, measured: Path, spec: RegionSpec, width: int, height: int, fill: str,
    encoding: str,
) -> None:  # fmt: skip
    from tilecast.workers.region import render_region

    source_id = register_source(renderer, measured)
    request = RegionRequest(
        source_id, spec, width, height, encoding=EncodingOptions(encoding), fill=fill
    )
    ours = _decode(render_region(renderer, request, generation_of(renderer, source_id)))
    region = {"left": 0, "top": 0, "right": spec.right, "bottom": spec.bottom}
    data, _ = large_image.open(str(measured)).getRegion(
        region=region, output={"maxWidth": width, "maxHeight": height}, fill=fill,
        encoding=encoding,
    )  # fmt: skip
    theirs = _decode(data)
    assert ours.shape == theirs.shape == (height, width, 4 if encoding == "PNG" else 3)
    if encoding == "PNG":
        _within_one(ours, theirs)
    else:
        # JPEG: the same picture; the padding's colour within JPEG's error.
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 2


def test_letterboxed_thumbnails_equal_large_images(renderer: Renderer, measured: Path) -> None:
    """Same size, same padding at the same place (the picture is resampled by libvips
    here and PIL there, so only its size and place are compared exactly)."""
    source_id = register_source(renderer, measured)
    request = ThumbnailRequest(source_id, 200, 200, encoding=PNG, fill="#ff0000ff")
    ours = _decode(renderer.render_thumbnail(request, generation_of(renderer, source_id)))
    data, _ = large_image.open(str(measured)).getThumbnail(
        width=200, height=200, fill="#ff0000", encoding="PNG"
    )
    theirs = _decode(data)
    assert ours.shape == theirs.shape == (200, 200, 4)
    padding = np.all(theirs == [255, 0, 0, 255], axis=2)
    assert padding.sum() > 0
    assert np.array_equal(np.all(ours == [255, 0, 0, 255], axis=2), padding)


@pytest.mark.parametrize(
    ("name", "output", "region"),
    [
        ("measured", {"maxWidth": 256, "maxHeight": 256}, {}),
        ("measured", {"maxWidth": 333}, {"left": 10, "top": 20, "right": 990, "bottom": 600}),
        ("measured", {"maxWidth": 1500}, {}),  # upsampled
        ("rgba", {"maxWidth": 100}, {}),
        ("uint16", {"maxWidth": 150, "maxHeight": 150}, {}),
    ],
)
def test_resampled_histograms_equal_large_images(
    renderer: Renderer,
    measured: Path,
    wk_images: dict[str, Path],
    name: str,
    output: dict[str, int],
    region: dict[str, int],
) -> None:
    from tilecast.workers.histogram import histogram

    path = measured if name == "measured" else wk_images[name]
    source_id = register_source(renderer, path)
    spec = RegionSpec(**{k: float(v) for k, v in region.items()})
    request = HistogramRequest(
        source_id, spec, output.get("maxWidth"), output.get("maxHeight"), resample=True
    )
    ours = histogram(renderer, request, generation_of(renderer, source_id))
    theirs = large_image.open(str(path)).histogram(output=output, region=region)["histogram"]
    assert len(ours) == len(theirs)
    for mine, their in zip(ours, theirs, strict=True):
        assert mine["samples"] == float(their["samples"])
        assert mine["hist"] == [float(v) for v in their["hist"]]
        assert mine["mean"] == pytest.approx(float(their["mean"]))
        assert (mine["min"], mine["max"]) == (float(their["min"]), float(their["max"]))


@pytest.mark.parametrize(
    "query",
    [{"magnification": "20"}, {"mm_x": "0.0013", "left": "100", "right": "900"},
     {"magnification": "20", "resample": "false"}],
)  # fmt: skip
def test_histograms_at_a_magnification_equal_large_images(
    renderer: Renderer, measured: Path, query: dict[str, str]
) -> None:
    from tilecast.workers.histogram import histogram

    source_id = register_source(renderer, measured)
    request = HistogramRequest.from_query(source_id, 0, query)
    assert request.width is None and request.scale.given
    ours = histogram(renderer, request, generation_of(renderer, source_id))
    scale = {k: float(v) for k, v in query.items() if k in ("magnification", "mm_x")}
    region = {k: float(v) for k, v in query.items() if k in ("left", "right")}
    kwargs = {"resample": False} if query.get("resample") == "false" else {}
    theirs = large_image.open(str(measured)).histogram(scale=scale, region=region, **kwargs)
    for mine, their in zip(ours, theirs["histogram"], strict=True):
        assert mine["samples"] == float(their["samples"])
        assert mine["hist"] == [float(v) for v in their["hist"]]
