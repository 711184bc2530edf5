"""Frames, data types, band layouts and associated images over HTTP, against large_image.

Every file of tests/images_frames.py is registered through the api (``frame_sources``)
and compared with ``large_image.open`` on the same file: metadata JSON field for field;
unstyled tiles (native and synthesized levels, several frames, through ``zxy?frame=`` and
``fzxy``) decoded -- PNG within 1 per channel, JPEG at PSNR >= 40 dB; associated images
against ``getAssociatedImage``. Documented difference: large_image names an Aperio
thumbnail page by the slide's size; tilecast calls it ``thumbnail`` (see
workers/sources/tiffassociated.py).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests import largeimage_reference
from tests.conftest import ApiServer
from tests.images_frames import (
    FRAME_IMAGES,
    OME_CHANNEL_NAMES,
    SVS_HEIGHT,
    SVS_WIDTH,
    distinct_values,
)

pytestmark = pytest.mark.integration
large_image = pytest.importorskip("large_image")


@pytest.fixture(autouse=True)
def large_image_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    largeimage_reference.pin(monkeypatch)


large_image.config.setConfig("icc_correction", False)

# A frame subset per multi-frame file: first, a middle one, last.
FRAMES = {"multipage": [0, 1, 2], "ome": [0, 4, 11]}
# Levels stored in the files (others are synthesized); default: full resolution only.
NATIVE_LEVELS = {"svs": {1, 3}, "ome": {1, 2}}
# Synthesized 8-bit levels of at most 4 bands are filtered (Lanczos), not subsampled.
# large_image reduces the nearest stored level by up to 8x in one PIL resize of a
# premultiplied-RGBA mosaic; tilecast halves level by level with libvips (each level is
# made once, from the cached level above: workers/synthesis.py), so these tiles agree
# to a PSNR bound, not to 1 per pixel. Measured on these files: 34-46 dB, worst at the
# edges of the content and two or more levels below a stored one.
SYNTHESIZED_PSNR = 30.0
# Files whose last band is alpha: large_image resizes them premultiplied (PIL), so a fully
# transparent pixel of a synthesized level comes out black there and keeps its colour
# here; both are invisible. Synthesized levels of these are compared as seen: colour
# premultiplied by alpha, and alpha.
ALPHA = {"bands2_alpha", "bands4_alpha"}
# large_image's name for the Aperio thumbnail page of the generated SVS (see module doc).
LARGE_IMAGE_THUMBNAIL = f"{SVS_WIDTH}x{SVS_HEIGHT}"
# Every reference tile shows at least this many different pixels: the files hold smooth
# structure plus texture (tests/images_frames.py), so fewer means large_image's answer
# was flattened (as 8-bit floats in [0, 1] would be) and any answer would pass. The
# fewest, 11, in the OME file's dim first channel (12-bit values, 0-15 in 8 bits).
MIN_DISTINCT = 8


def reference(path: Path, encoding: str = "PNG") -> Any:
    return large_image.open(str(path), encoding=encoding)


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    array = np.asarray(image)
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def max_diff(ours: np.ndarray, theirs: np.ndarray) -> int:
    assert ours.shape == theirs.shape
    return int(np.abs(ours.astype(int) - theirs.astype(int)).max())


def psnr(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape
    mse = float(np.mean((ours.astype(float) - theirs.astype(float)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def premultiplied(pixels: np.ndarray) -> np.ndarray:
    """Colour times alpha (0-255), and alpha: what a viewer shows of an image with alpha."""
    alpha = pixels[:, :, -1:].astype(float)
    colour = pixels[:, :, :-1].astype(float) * alpha / 255
    return np.concatenate([colour, alpha], axis=2)


def json_roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def tiles_to_check(meta: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The first and last tile of every level."""
    out = []
    for z in range(meta["levels"]):
        scale = 2 ** (meta["levels"] - 1 - z)
        across = math.ceil(meta["sizeX"] / (meta["tileWidth"] * scale))
        down = math.ceil(meta["sizeY"] / (meta["tileHeight"] * scale))
        out += sorted({(z, 0, 0), (z, across - 1, down - 1)})
    return out


def content(meta: dict[str, Any], z: int, x: int, y: int) -> tuple[int, int]:
    """Width and height of tile (z, x, y)'s content (large_image pads edge tiles)."""
    scale = 2 ** (meta["levels"] - 1 - z)
    width = math.ceil(meta["sizeX"] / scale)
    height = math.ceil(meta["sizeY"] / scale)
    return (
        min(meta["tileWidth"], width - x * meta["tileWidth"]),
        min(meta["tileHeight"], height - y * meta["tileHeight"]),
    )


# --- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRAME_IMAGES))
def test_metadata_equals_large_image(
    api: ApiServer, frame_sources: dict[str, str], frame_images: dict[str, Path], name: str
) -> None:
    response = api.get(f"/item/{frame_sources[name]}/tiles")
    assert response.status_code == 200, response.text
    theirs = json_roundtrip(large_image.open(str(frame_images[name])).getMetadata())
    assert response.json() == theirs


def test_ome_axes(api: ApiServer, frame_sources: dict[str, str]) -> None:
    """What a viewer reads from the OME file's metadata (also covered field for field above)."""
    meta = api.get(f"/item/{frame_sources['ome']}/tiles").json()
    assert meta["channels"] == list(OME_CHANNEL_NAMES)
    assert meta["IndexRange"] == {"IndexC": 3, "IndexZ": 2, "IndexT": 2}
    assert meta["IndexStride"] == {"IndexC": 1, "IndexZ": 3, "IndexT": 6}
    assert meta["frames"][7]["IndexC"] == 1 and meta["frames"][7]["IndexZ"] == 0
    assert meta["frames"][7]["IndexT"] == 1 and meta["frames"][7]["Channel"] == "GFP"


# --- tiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRAME_IMAGES))
def test_png_tiles_equal_large_image(
    api: ApiServer, frame_sources: dict[str, str], frame_images: dict[str, Path], name: str
) -> None:
    """Every level's first and last tile, in several frames, via zxy?frame= and fzxy."""
    source = frame_sources[name]
    meta = api.get(f"/item/{source}/tiles").json()
    theirs = reference(frame_images[name])
    for number, frame in enumerate(FRAMES.get(name, [0])):
        for z, x, y in tiles_to_check(meta):
            if number % 2:
                path = f"/item/{source}/tiles/fzxy/{frame}/{z}/{x}/{y}?encoding=PNG"
            else:
                path = f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=PNG&frame={frame}"
            response = api.get(path)
            assert response.status_code == 200, (path, response.text)
            ours = decode(response.content)
            expected = decode(theirs.getTile(x, y, z, frame=frame))
            w, h = content(meta, z, x, y)
            ours, expected = ours[:h, :w], expected[:h, :w]
            assert distinct_values(expected) >= MIN_DISTINCT, (name, frame, z, x, y)
            native = z in NATIVE_LEVELS.get(name, {meta["levels"] - 1})
            if native or meta["dtype"] != "uint8" or meta["bandCount"] > 4:
                assert max_diff(ours, expected) <= 1, (name, frame, z, x, y)
            else:
                if name in ALPHA:
                    ours, expected = premultiplied(ours), premultiplied(expected)
                assert psnr(ours, expected) >= SYNTHESIZED_PSNR, (name, frame, z, x, y)


@pytest.mark.parametrize("name", ["multipage", "ome", "uint16_rgb", "bands4_alpha", "svs"])
def test_jpeg_tiles_close_to_large_image(
    api: ApiServer, frame_sources: dict[str, str], frame_images: dict[str, Path], name: str
) -> None:
    source = frame_sources[name]
    meta = api.get(f"/item/{source}/tiles").json()
    theirs = reference(frame_images[name], "JPEG")
    frame = FRAMES.get(name, [0])[-1]
    for z, x, y in tiles_to_check(meta):
        if name in ALPHA and z != meta["levels"] - 1:
            continue  # synthesized alpha: see ALPHA (JPEG drops alpha, showing the colour)
        response = api.get(f"/item/{source}/tiles/fzxy/{frame}/{z}/{x}/{y}")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "image/jpeg"
        ours = decode(response.content)
        expected = decode(theirs.getTile(x, y, z, frame=frame))
        w, h = content(meta, z, x, y)
        bands = min(ours.shape[2], expected.shape[2])
        assert distinct_values(expected[:h, :w]) >= MIN_DISTINCT, (name, z, x, y)
        assert psnr(ours[:h, :w, :bands], expected[:h, :w, :bands]) >= 40, (name, z, x, y)


def test_svs_native_jpeg_tiles_are_large_images_bytes(
    api: ApiServer, frame_sources: dict[str, str], frame_images: dict[str, Path]
) -> None:
    """The stored levels (full resolution and 4x) pass the file's JPEG through."""
    theirs = reference(frame_images["svs"], "JPEG")
    for z, x, y in [(3, 0, 0), (3, 4, 3), (1, 0, 0), (1, 1, 0)]:
        response = api.get(f"/item/{frame_sources['svs']}/tiles/zxy/{z}/{x}/{y}")
        assert response.status_code == 200
        assert response.content == bytes(theirs.getTile(x, y, z))


def test_fzxy_is_the_zxy_tile_of_that_frame(api: ApiServer, frame_sources: dict[str, str]) -> None:
    source = frame_sources["multipage"]
    by_query = api.get(f"/item/{source}/tiles/zxy/2/1/1?frame=2&encoding=PNG")
    by_path = api.get(f"/item/{source}/tiles/fzxy/2/2/1/1?encoding=PNG")
    assert by_query.status_code == by_path.status_code == 200
    assert by_query.content == by_path.content
    assert by_query.headers["ETag"] == by_path.headers["ETag"]
    # The path's frame wins over a query frame.
    assert api.get(f"/item/{source}/tiles/fzxy/2/2/1/1?encoding=PNG&frame=0").content == (
        by_path.content
    )
    other = api.get(f"/item/{source}/tiles/fzxy/0/2/1/1?encoding=PNG")
    assert other.status_code == 200 and other.content != by_path.content


def test_frames_of_a_thumbnail_differ(api: ApiServer, frame_sources: dict[str, str]) -> None:
    source = frame_sources["ome"]
    first = api.get(f"/item/{source}/tiles/thumbnail?frame=0&encoding=PNG")
    last = api.get(f"/item/{source}/tiles/thumbnail?frame=11&encoding=PNG")
    assert first.status_code == last.status_code == 200
    assert first.content != last.content


# --- associated images ---------------------------------------------------------------------


def test_associated_image_names(
    api: ApiServer, frame_sources: dict[str, str], frame_images: dict[str, Path]
) -> None:
    response = api.get(f"/item/{frame_sources['svs']}/tiles/images")
    assert response.status_code == 200
    assert response.json() == ["label", "macro", "thumbnail"]
    theirs = large_image.open(str(frame_images["svs"])).getAssociatedImagesList()
    # The one documented difference: large_image's name for Aperio's thumbnail page.
    assert theirs == sorted(["label", "macro", LARGE_IMAGE_THUMBNAIL])
    for name in ("multipage", "ome", "bands3"):
        response = api.get(f"/item/{frame_sources[name]}/tiles/images")
        assert response.status_code == 200 and response.json() == []
        assert large_image.open(str(frame_images[name])).getAssociatedImagesList() == []


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("label", {"encoding": "PNG"}),
        ("macro", {"encoding": "PNG"}),
        ("thumbnail", {"encoding": "PNG"}),
        ("label", {"encoding": "PNG", "width": "100"}),
        ("macro", {"encoding": "PNG", "height": "90"}),
        ("thumbnail", {"encoding": "PNG", "width": "700", "height": "300"}),
        ("label", {}),
        ("macro", {"encoding": "JPEG", "jpegQuality": "90", "width": "400"}),
    ],
)
def test_associated_images_equal_large_image(
    api: ApiServer,
    frame_sources: dict[str, str],
    frame_images: dict[str, Path],
    name: str,
    query: dict[str, str],
) -> None:
    response = api.get(f"/item/{frame_sources['svs']}/tiles/images/{name}", params=query)
    assert response.status_code == 200, response.text
    encoding = query.get("encoding", "JPEG")
    assert response.headers["Content-Type"] == f"image/{encoding.lower()}"
    options: dict[str, Any] = {"encoding": encoding}
    for key in ("width", "height", "jpegQuality"):
        if key in query:
            options[key] = int(query[key])
    theirs = large_image.open(str(frame_images["svs"]))
    their_name = LARGE_IMAGE_THUMBNAIL if name == "thumbnail" else name
    data, _mime = theirs.getAssociatedImage(their_name, **options)
    ours, expected = decode(response.content), decode(data)
    if encoding == "PNG":
        assert max_diff(ours, expected) <= 1
    else:
        assert psnr(ours, expected) >= 40


def test_associated_image_is_cached_with_an_etag(
    api: ApiServer, frame_sources: dict[str, str]
) -> None:
    path = f"/item/{frame_sources['svs']}/tiles/images/label?encoding=PNG&width=64"
    first = api.get(path)
    again = api.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert first.status_code == 200 and again.status_code == 304


# --- bad input ---------------------------------------------------------------------------


def assert_error(response: Any, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    if parameter is not None:
        assert body["parameter"] == parameter
    return body


@pytest.mark.parametrize(
    "path",
    [
        "tiles/zxy/0/0/0?frame=3",
        "tiles/fzxy/3/0/0/0",
        "tiles/fzxy/999999/2/0/0",
        "tiles/fzxy/-1/0/0/0",
        "tiles/fzxy/one/0/0/0",
        "tiles/thumbnail?frame=3",
    ],
)
def test_frame_out_of_range_is_a_400(
    api: ApiServer, frame_sources: dict[str, str], path: str
) -> None:
    assert_error(api.get(f"/item/{frame_sources['multipage']}/{path}"), 400, "frame")


def test_tile_outside_a_frame_is_still_a_404(api: ApiServer, frame_sources: dict[str, str]) -> None:
    assert_error(api.get(f"/item/{frame_sources['ome']}/tiles/fzxy/11/3/0/0"), 404, "z")
    assert_error(api.get(f"/item/{frame_sources['ome']}/tiles/fzxy/11/2/5/0"), 404, "x")


@pytest.mark.parametrize("name", ["nolabel", "LABEL", "label.png", "a:b", "x" * 100])
def test_unknown_associated_image_is_a_404(
    api: ApiServer, frame_sources: dict[str, str], name: str
) -> None:
    assert_error(api.get(f"/item/{frame_sources['svs']}/tiles/images/{name}"), 404)
    assert_error(api.get(f"/item/{frame_sources['bands3']}/tiles/images/label"), 404)


def test_associated_image_bad_parameters(api: ApiServer, frame_sources: dict[str, str]) -> None:
    base = f"/item/{frame_sources['svs']}/tiles/images/label"
    assert_error(api.get(base, params={"width": "wide"}), 400, "width")
    assert_error(api.get(base, params={"height": "100000"}), 400, "height")
    assert_error(api.get(base, params={"encoding": "BMP"}), 400, "encoding")
    assert_error(api.get("/item/no-such-item/tiles/images"), 404)
    assert_error(api.get("/item/no-such-item/tiles/images/label"), 404)
