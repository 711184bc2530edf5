"""Regions, pixels, histograms, band information and encodings over HTTP, rendered by real
Celery workers, against large_image's getRegion / getPixel / histogram /
getBandInformation on the same generated files.

Lossless outputs must match large_image's decoded pixels within 1 per 8-bit channel,
lossy ones (JPEG, WEBP, AVIF, JPEG-in-TIFF) within PSNR >= 40 dB. Where the two read
different pixels on purpose, the case says so and why:

- Levels neither file stores: large_image synthesizes them with its own compositor,
  tilecast with workers/synthesis.py (PSNR-close, not equal; see that module), so a
  region large_image reads from such a level is compared by PSNR.
- large_image synthesizes missing levels as RGBA (``_getTileFromEmptyLevel`` pastes
  onto a transparent canvas), so its regions read from them carry an opaque alpha
  band the file does not have; colour channels are compared, and the extra alpha
  must be opaque.
- A region outside the image, or of zero size, is an empty 200 in large_image and a 400
  naming the parameter here; a histogram of one crashes large_image's endpoint.
- ``getBandInformation`` answers the first frame's statistics for every frame once a
  tile source has been asked (it keeps ``_bandInfo``); references use uncached sources.
- ``density`` histograms of bands with no sample in range are NaN (0 / 0) in
  large_image; tilecast keeps the zero counts.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tifffile
from PIL import Image

from tests import largeimage_reference
from tests.conftest import ApiServer
from tests.images_frames import distinct_values

pytestmark = pytest.mark.integration

large_image = pytest.importorskip("large_image")


@pytest.fixture(autouse=True)
def large_image_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    largeimage_reference.pin(monkeypatch)


large_image.config.setConfig("icc_correction", False)

PSNR_FLOOR = 40.0
# Every reference region shows at least this many different pixels (the files hold
# smooth structure plus texture: tests/images.py, tests/images_frames.py; the fewest,
# 13, in a 50 x 40 area upsampled).
MIN_DISTINCT = 8
STYLE = {"band": 1, "min": 50, "max": 200, "palette": "#f00"}


# --- helpers ---------------------------------------------------------------------------


def decode(data: bytes) -> np.ndarray:
    """(h, w, bands) of the image's own dtype (16-bit PNG / TIFF stay 16-bit), decoded by
    tifffile or PIL: neither side's own code (tilecast's decoder would agree with its
    own encoder's mistakes)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        array = tifffile.imread(io.BytesIO(data))
        return array if array.ndim == 3 else array[:, :, np.newaxis]
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
            image = image.convert("RGBA")
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, np.newaxis]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def comparable(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colour channels both have; an alpha band only one of them has must be opaque
    (large_image's synthesized levels are RGBA)."""
    assert ours.shape[:2] == theirs.shape[:2], (ours.shape, theirs.shape)
    bands = min(ours.shape[2], theirs.shape[2])
    for extra in (ours, theirs):
        if extra.shape[2] > bands:
            assert extra.shape[2] in (2, 4) and extra[:, :, -1].min() == 255
    if bands == 1 and max(ours.shape[2], theirs.shape[2]) >= 3:
        # large_image converts grey regions it resamples to RGB(A): compare grey values.
        wide = ours if ours.shape[2] >= 3 else theirs
        assert np.array_equal(wide[:, :, 0], wide[:, :, 1])
        return ours[:, :, :1], theirs[:, :, :1]
    return ours[:, :, :bands], theirs[:, :, :bands]


def assert_pixels(ours: bytes, theirs: bytes, *, lossless: bool, note: str = "") -> float:
    a, b = comparable(decode(ours), decode(theirs))
    # A blank (or flattened) reference would match any near-blank answer.
    assert distinct_values(b) >= MIN_DISTINCT, note
    value = psnr(a, b)
    if lossless:
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, (note, value)
    else:
        assert value >= PSNR_FLOOR, (note, value)
    return value


def reference_region(path: Path, query: dict[str, Any], *, style: Any = None) -> bytes:
    """large_image's getRegion for the same query parameters (as its girder endpoint
    maps them)."""
    region = {
        name: float(query[key])
        for key, name in (("left", "left"), ("top", "top"), ("right", "right"),
                          ("bottom", "bottom"), ("regionWidth", "width"),
                          ("regionHeight", "height"))
        if key in query
    }  # fmt: skip
    if "units" in query:
        region["units"] = query["units"]
    output = {name: int(query[name]) for name in ("width", "height") if name in query}
    output = {("maxWidth" if k == "width" else "maxHeight"): v for k, v in output.items()}
    kwargs: dict[str, Any] = {"encoding": query.get("encoding", "JPEG")}
    for key in ("jpegQuality", "jpegSubsampling", "tiffCompression"):
        if key in query:
            kwargs[key] = int(query[key]) if key != "tiffCompression" else query[key]
    source = large_image.open(str(path), **({"style": style} if style else {}))
    data, _mime = source.getRegion(
        region=region, output=output, frame=int(query.get("frame", 0)), **kwargs
    )
    return bytes(data)


def get_ok(api: ApiServer, path: str, params: dict[str, Any]) -> requests.Response:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def files(
    images: dict[str, Path], frame_images: dict[str, Path], sources: dict[str, str],
    frame_sources: dict[str, str],
) -> dict[str, tuple[str, Path]]:  # fmt: skip
    """name -> (source id, path) of every generated file."""
    out = {name: (sources[name], path) for name, path in images.items() if name in sources}
    out.update({name: (frame_sources[name], path) for name, path in frame_images.items()})
    return out


# --- regions ---------------------------------------------------------------------------

REGION = {"left": 100, "top": 200, "right": 900, "bottom": 700}

# (file, query, lossless: compare within 1 per channel, else by PSNR -- see the module doc)
REGION_CASES = [
    ("pyramid", {**REGION}, True),
    ("pyramid", {**REGION, "width": 300}, True),
    ("pyramid", {"left": 0.1, "top": 0.2, "right": 0.6, "bottom": 0.9, "units": "fraction",
                 "height": 400}, True),
    ("pyramid", {"left": 10, "top": 10, "regionWidth": 50, "regionHeight": 40, "width": 300},
     True),  # upsampled (bicubic)
    ("pyramid", {"left": -300, "top": -200}, True),  # offsets from the right / bottom edge
    ("single", {"width": 1000}, True),  # large_image reads the stored full resolution
    ("single", {"left": 20, "top": 30, "right": 2990, "bottom": 1990, "width": 160}, False),
    ("lzw", {"left": 333, "top": 111, "regionWidth": 400, "regionHeight": 300}, True),
    ("jpeg", {"left": 5, "top": 5, "right": 995, "bottom": 695, "width": 250}, True),
    ("svs", {"width": 300}, True),  # the stored 4x level
    ("svs", {"left": 100, "top": 100, "right": 1100, "bottom": 800, "width": 600}, True),
    ("multipage", {"left": 40, "top": 30, "right": 560, "bottom": 420, "frame": 2}, True),
    ("multipage", {"width": 200, "frame": 1}, True),
    ("ome", {"left": 20, "top": 20, "right": 500, "bottom": 380, "width": 150, "frame": 7},
     True),  # one band of uint16: subsampled, as large_image does
    ("uint16_rgb", {"width": 250}, True),
    ("float32", {"left": 50, "top": 50, "right": 550, "bottom": 400}, True),
    ("int16", {"width": 333}, True),
    ("bands2_alpha", {"left": 0, "top": 0, "right": 400, "bottom": 300, "width": 200}, True),
    ("bands4_alpha", {"width": 300}, True),
    ("bands6", {"left": 100, "top": 100, "right": 500, "bottom": 400}, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "query", "lossless"),
    REGION_CASES,
    ids=[f"{n}-{i}" for i, (n, _q, _l) in enumerate(REGION_CASES)],
)
def test_region_matches_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], name: str, query: dict, lossless: bool
) -> None:
    source_id, path = files[name]
    query = {**query, "encoding": "PNG"}
    response = get_ok(api, f"/item/{source_id}/tiles/region", query)
    assert response.headers["Content-Type"] == "image/png"
    assert_pixels(response.content, reference_region(path, query), lossless=lossless, note=name)


@pytest.mark.parametrize(
    ("name", "query", "style"),
    [
        ("pyramid", {**REGION, "width": 300}, STYLE),
        ("uint16_rgb", {"width": 200}, {"band": 2, "min": "auto", "max": "auto",
                                        "palette": "viridis"}),
        ("ome", {"width": 260, "frame": 4},
         {"bands": [{"framedelta": 0, "palette": "#0f0", "min": "auto", "max": "auto"},
                    {"framedelta": 1, "palette": "#f0f", "min": "auto", "max": "auto"}]}),
    ],
)  # fmt: skip
def test_styled_region_matches_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], name: str, query: dict, style: dict
) -> None:
    """Regions style through the same Renderer.style_pixels as tiles; a style may read
    the same area of another frame."""
    source_id, path = files[name]
    query = {**query, "encoding": "PNG"}
    response = get_ok(api, f"/item/{source_id}/tiles/region", {**query, "style": json.dumps(style)})
    theirs = reference_region(path, query, style=style)
    assert_pixels(response.content, theirs, lossless=True, note=name)


# --- encodings -------------------------------------------------------------------------

ENCODING_REGION = {**REGION, "width": 400}
ENCODING_CASES = [
    ({"encoding": "PNG"}, True),
    ({"encoding": "JPEG"}, False),
    ({"encoding": "JPEG", "jpegQuality": 80, "jpegSubsampling": 2}, False),
    ({"encoding": "WEBP"}, False),
    ({"encoding": "TIFF"}, True),
    ({"encoding": "TIFF", "tiffCompression": "lzw"}, True),
    ({"encoding": "TIFF", "tiffCompression": "deflate"}, True),
    ({"encoding": "TIFF", "tiffCompression": "jpeg"}, False),
    ({"encoding": "AVIF"}, False),
]
CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}


@pytest.mark.parametrize(("encoding", "lossless"), ENCODING_CASES)
def test_encoding_matches_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], encoding: dict, lossless: bool
) -> None:
    source_id, path = files["pyramid"]
    query = {**ENCODING_REGION, **encoding}
    response = get_ok(api, f"/item/{source_id}/tiles/region", query)
    assert response.headers["Content-Type"] == CONTENT_TYPES[encoding["encoding"]]
    theirs = reference_region(path, query)
    assert_pixels(response.content, theirs, lossless=lossless, note=str(encoding))
    if encoding == {"encoding": "WEBP"}:
        assert response.content == theirs  # PIL with large_image's (default) options


def test_webp_lossless_and_quality(api: ApiServer, files: dict[str, tuple[str, Path]]) -> None:
    """large_image has no lossless WEBP: the lossless one equals its PNG."""
    source_id, path = files["pyramid"]
    url = f"/item/{source_id}/tiles/region"
    lossless = get_ok(api, url, {**ENCODING_REGION, "encoding": "WEBP", "webpLossless": "true"})
    png = reference_region(path, {**ENCODING_REGION, "encoding": "PNG"})
    assert_pixels(lossless.content, png, lossless=True)
    low = get_ok(api, url, {**ENCODING_REGION, "encoding": "WEBP", "webpQuality": 10})
    high = get_ok(api, url, {**ENCODING_REGION, "encoding": "WEBP", "webpQuality": 100})
    assert len(low.content) < len(high.content)
    assert low.headers["ETag"] != high.headers["ETag"]


def test_sixteen_bit_tiff_region(api: ApiServer, files: dict[str, tuple[str, Path]]) -> None:
    """Single-band uint16 regions stay 16-bit in a TIFF, as in large_image."""
    source_id, path = files["ome"]
    query = {"left": 0, "top": 0, "right": 300, "bottom": 200, "frame": 5, "encoding": "TIFF"}
    response = get_ok(api, f"/item/{source_id}/tiles/region", query)
    ours, theirs = decode(response.content), decode(reference_region(path, query))
    assert ours.dtype == theirs.dtype == np.uint16
    assert distinct_values(theirs) >= MIN_DISTINCT
    assert np.array_equal(ours, theirs)


def test_region_is_cached_with_http_caching(
    api: ApiServer, files: dict[str, tuple[str, Path]]
) -> None:
    source_id, _path = files["pyramid"]
    url = f"/item/{source_id}/tiles/region"
    query = {"left": 7, "top": 9, "right": 777, "bottom": 555, "width": 123, "encoding": "PNG"}
    first = get_ok(api, url, query)
    again = get_ok(api, url, {**query, "left": "7.0"})  # the same region, spelled otherwise
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    assert first.headers["Cache-Control"].startswith("public")
    cached = api.get(url, params=query, headers={"If-None-Match": first.headers["ETag"]})
    assert cached.status_code == 304


# --- pixels ----------------------------------------------------------------------------

PIXEL_CASES = [
    ("pyramid", {"left": 123, "top": 456}),
    ("pyramid", {"left": 2999.4, "top": 0}),
    ("pyramid", {"left": -1, "top": -1}),
    ("pyramid", {"left": 0.5, "top": 0.25, "units": "fraction"}),
    ("ome", {"left": 301, "top": 222, "frame": 5}),
    ("float32", {"left": 10, "top": 20}),
    ("int16", {"left": 599, "top": 449}),
    ("bands2_alpha", {"left": 3, "top": 400}),
    ("bands6", {"left": 200, "top": 100}),
    ("svs", {"left": 1199, "top": 899}),
    ("pyramid", {"left": 3000, "top": 10}),  # outside: {} as in large_image
]


@pytest.mark.parametrize(("name", "query"), PIXEL_CASES)
def test_pixel_matches_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], name: str, query: dict
) -> None:
    source_id, path = files[name]
    response = get_ok(api, f"/item/{source_id}/tiles/pixel", query)
    assert response.headers["Content-Type"] == "application/json"
    region = {k: query[k] for k in ("left", "top", "units") if k in query}
    theirs = large_image.open(str(path)).getPixel(region=region, frame=query.get("frame", 0))
    assert response.json() == json.loads(json.dumps(dict(theirs)))


# --- histograms ------------------------------------------------------------------------


def reference_histogram(path: Path, query: dict[str, Any]) -> Any:
    """large_image's histogram as its girder endpoint calls it and casts it: with a
    ``width`` or ``height``, its tile iterator resamples unless ``resample`` is false
    (tests/integration/girder/test_large_image_compat.py checks that against Girder);
    with neither, tilecast analyses the image as it is up to 2048 x 2048 (its bound)."""
    kwargs: dict[str, Any] = {"frame": int(query.get("frame", 0))}
    if "width" in query or "height" in query:
        output = {"maxWidth": query.get("width"), "maxHeight": query.get("height")}
        kwargs["output"] = {k: int(v) for k, v in output.items() if v is not None}
        if "resample" in query:
            kwargs["resample"] = query["resample"] == "true"
    else:
        kwargs["output"] = {"maxWidth": 2048, "maxHeight": 2048}
        kwargs["resample"] = False
    region = {k: float(query[k]) for k in ("left", "top", "right", "bottom") if k in query}
    if region:
        kwargs["region"] = region
    if "bins" in query:
        kwargs["bins"] = int(query["bins"])
    if "rangeMin" in query or "rangeMax" in query:
        kwargs["range"] = [query.get("rangeMin", 0), query.get("rangeMax", 256)]
    elif query.get("roundRange") == "true":
        kwargs["range"] = "round"
    kwargs["density"] = query.get("density") == "true"
    result = large_image.open(str(path)).histogram(**kwargs)["histogram"]
    for entry in result:
        for key in ("bin_edges", "hist", "range"):
            entry[key] = [float(v) for v in entry[key]]
        for key in ("min", "max", "samples"):
            entry[key] = float(entry[key])
    return result


HISTOGRAM_CASES = [
    ("pyramid", {}),
    ("pyramid", {"bins": 16}),
    ("pyramid", {"roundRange": "true"}),
    ("pyramid", {"rangeMin": 100, "rangeMax": 200, "bins": 20, "density": "true"}),
    ("pyramid", {"left": 100, "top": 100, "right": 2100, "bottom": 1500, "width": 300}),
    ("single", {"width": 700}),
    ("single", {"width": 700, "resample": "false"}),
    ("bands4_alpha", {"width": 90, "height": 90}),
    ("int16", {"width": 120, "bins": 16}),
    ("ome", {"frame": 4, "roundRange": "true"}),
    ("ome", {"frame": 11, "bins": 64}),
    ("float32", {"bins": 32}),
    ("int16", {"roundRange": "true"}),
    ("bands4_alpha", {}),
    ("bands6", {"bins": 8}),
]


@pytest.mark.parametrize(("name", "query"), HISTOGRAM_CASES)
def test_histogram_matches_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], name: str, query: dict
) -> None:
    source_id, path = files[name]
    ours = get_ok(api, f"/item/{source_id}/tiles/histogram", query).json()
    theirs = reference_histogram(path, query)
    assert len(ours) == len(theirs)
    for mine, their in zip(ours, theirs, strict=True):
        assert set(mine) == set(their)
        for key, value in their.items():
            # large_image sums float32 tiles in float32; tilecast in float64.
            tolerance = 1e-6 if key in ("mean", "stdev") else 1e-9
            assert mine[key] == pytest.approx(value, rel=tolerance, abs=1e-9), (name, key)


def test_histogram_only_min_max(api: ApiServer, files: dict[str, tuple[str, Path]]) -> None:
    """large_image's endpoint fails on onlyMinMax (it indexes the missing "histogram"
    key); its histogram() answers min / max / mean / stdev, as tilecast does."""
    source_id, path = files["uint16_rgb"]
    ours = get_ok(api, f"/item/{source_id}/tiles/histogram", {"onlyMinMax": "true"}).json()
    theirs = large_image.open(str(path)).histogram(
        onlyMinMax=True, output={"maxWidth": 2048, "maxHeight": 2048}, resample=False
    )
    for key in ("min", "max", "mean", "stdev"):
        assert ours[key] == pytest.approx([float(v) for v in theirs[key]])


# --- band information ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frame"),
    [("pyramid", 0), ("bands4_alpha", 0), ("bands6", 0), ("bands2", 0), ("uint16_rgb", 0),
     ("ome", 0), ("ome", 9), ("multipage", 2)],
)  # fmt: skip
def test_bands_match_large_image(
    api: ApiServer, files: dict[str, tuple[str, Path]], name: str, frame: int
) -> None:
    source_id, path = files[name]
    ours = get_ok(api, f"/item/{source_id}/tiles/bands", {"frame": frame}).json()
    theirs = large_image.open(str(path), noCache=True).getBandInformation(
        statistics=True, frame=frame
    )
    assert set(ours) == {str(band) for band in theirs}
    for band, info in theirs.items():
        assert set(ours[str(band)]) == set(info)
        assert ours[str(band)]["interpretation"] == info["interpretation"]
        for key in ("min", "max", "mean", "stdev"):
            assert ours[str(band)][key] == pytest.approx(float(info[key]), rel=1e-6)


# --- bad input -------------------------------------------------------------------------


def assert_400(response: requests.Response, parameter: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["parameter"] == parameter and body["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("endpoint", "query", "parameter"),
    [
        ("region", {"encoding": "GIF"}, "encoding"),
        ("region", {"encoding": "WEBP", "webpQuality": "0"}, "webpQuality"),
        ("region", {"encoding": "WEBP", "webpLossless": "maybe"}, "webpLossless"),
        ("region", {"encoding": "AVIF", "avifQuality": "200"}, "avifQuality"),
        ("region", {"encoding": "TIFF", "tiffCompression": "lzma"}, "tiffCompression"),
        ("region", {"jpegQuality": "high"}, "jpegQuality"),
        ("region", {"left": "3000"}, "left"),
        ("region", {"left": "5000", "right": "6000"}, "left"),
        ("region", {"right": "0"}, "right"),
        ("region", {"top": "-5000", "bottom": "-2500"}, "bottom"),
        ("region", {"left": "10", "regionWidth": "0"}, "regionWidth"),
        ("region", {"top": "1.5", "units": "fraction"}, "top"),
        ("region", {"left": "ten"}, "left"),
        ("region", {"units": "furlongs"}, "units"),
        ("region", {"width": "8000"}, "width"),  # 8000 x 5333: past the region bound
        ("region", {"height": "0"}, "height"),
        ("region", {"style": "{bad json"}, "style"),
        ("region", {"frame": "-1"}, "frame"),
        ("pixel", {"left": "x"}, "left"),
        ("pixel", {"top": "nan"}, "top"),
        ("histogram", {"bins": "0"}, "bins"),
        ("histogram", {"bins": "many"}, "bins"),
        ("histogram", {"bins": "10000000"}, "bins"),
        ("histogram", {"rangeMin": "10", "rangeMax": "5"}, "rangeMax"),
        ("histogram", {"left": "99999"}, "left"),
        ("histogram", {"density": "often"}, "density"),
        ("bands", {"frame": "x"}, "frame"),
    ],
)
def test_bad_input_names_the_parameter(
    api: ApiServer, files: dict[str, tuple[str, Path]], endpoint: str, query: dict, parameter: str
) -> None:
    source_id, _path = files["single"]
    assert_400(api.get(f"/item/{source_id}/tiles/{endpoint}", params=query), parameter)


def test_frames_out_of_range(api: ApiServer, files: dict[str, tuple[str, Path]]) -> None:
    source_id, _path = files["multipage"]
    for endpoint in ("region", "pixel", "histogram", "bands"):
        response = api.get(f"/item/{source_id}/tiles/{endpoint}", params={"frame": 3})
        assert response.status_code == 400, response.text
        assert response.json()["parameter"] == "frame"


def test_unknown_item(api: ApiServer) -> None:
    for endpoint in ("region", "pixel", "histogram", "bands"):
        response = api.get(f"/item/{'e' * 24}/tiles/{endpoint}")
        assert response.status_code == 404 and response.json()["error"] == "unknown_source"


def test_workers_still_serve_after_bad_input(
    api: ApiServer, files: dict[str, tuple[str, Path]]
) -> None:
    source_id, _path = files["lzw"]
    for query in (
        {"left": "1e9"},
        {"width": "100000"},
        {"encoding": "TIFF", "tiffCompression": "nope"},
    ):
        assert api.get(f"/item/{source_id}/tiles/region", params=query).status_code == 400
    fresh = {"left": 1, "top": 2, "right": 301, "bottom": 202, "encoding": "PNG", "width": 77}
    response = get_ok(api, f"/item/{source_id}/tiles/region", fresh)
    assert decode(response.content).shape[:2] == (51, 77)
    assert get_ok(api, f"/item/{source_id}/tiles/bands", {}).json()["1"]["interpretation"] == (
        "red"
    )
