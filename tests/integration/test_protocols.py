"""Deep Zoom, IIIF Image API 3.0 and TileJSON over the running stack: the answers'
shapes, their pixels beside ``zxy`` tiles and regions, and one cache with ``zxy``."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ApiServer
from tests.images import HEIGHT, WIDTH

pytestmark = pytest.mark.integration

DZ = "{http://schemas.microsoft.com/deepzoom/2008}"
# tests/images.py's pyramid: 3000 x 2000, 5 tilecast levels; Deep Zoom level 12 is full
# resolution, so DZI level L is tilecast level L - 8.
TOP_DZI_LEVEL = 12
CACHE = "X-Tilecast-Cache"


def pixels(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        return np.asarray(image.convert("RGB")).astype(float)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def size_of(response: requests.Response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        return image.size


# --- Deep Zoom -------------------------------------------------------------------------


def test_dzi_descriptor(api: ApiServer, sources: dict[str, str]) -> None:
    response = api.get(f"/item/{sources['pyramid']}/tiles/dzi.dzi")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{DZ}Image"
    assert root.attrib == {"TileSize": "256", "Overlap": "0", "Format": "jpg"}
    size = root.find(f"{DZ}Size")
    assert size is not None and size.attrib == {"Width": str(WIDTH), "Height": str(HEIGHT)}
    png = api.get(f"/item/{sources['pyramid']}/tiles/dzi.dzi?encoding=PNG&tilesize=512&overlap=1")
    assert ET.fromstring(png.content).attrib == {"TileSize": "512", "Overlap": "1", "Format": "png"}


def test_dzi_tile_on_the_grid_is_the_cached_zxy_tile(
    api: ApiServer, sources: dict[str, str]
) -> None:
    item = sources["pyramid"]
    for level, x, y in (
        (TOP_DZI_LEVEL, 2, 3),
        (TOP_DZI_LEVEL - 1, 1, 1),
        (TOP_DZI_LEVEL - 2, 1, 0),
    ):
        z = level - 8
        zxy = api.get(f"/item/{item}/tiles/zxy/{z}/{x}/{y}")
        dzi = api.get(f"/item/{item}/tiles/dzi_files/{level}/{x}_{y}.jpg")
        # One key, one cache entry. (Its bytes may change under a pre-rendering job
        # that writes the same tile as a re-encoded JPEG: compare pixels.)
        assert dzi.headers["ETag"] == zxy.headers["ETag"]
        assert dzi.headers[CACHE] == "hit"
        assert psnr(pixels(dzi), pixels(zxy)) >= 40


def test_dzi_edge_tiles_are_cropped(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    edge = api.get(f"/item/{item}/tiles/dzi_files/{TOP_DZI_LEVEL}/11_7.png")
    assert edge.headers["Content-Type"] == "image/png"
    assert size_of(edge) == (WIDTH - 11 * 256, HEIGHT - 7 * 256)
    full = pixels(api.get(f"/item/{item}/tiles/zxy/4/11/7?encoding=PNG"))
    assert psnr(pixels(edge), full[: HEIGHT - 7 * 256, : WIDTH - 11 * 256]) >= 45
    # Level 9 is 375 x 250: one row, its second tile 119 pixels wide.
    assert size_of(api.get(f"/item/{item}/tiles/dzi_files/9/1_0.jpg")) == (119, 250)


def test_dzi_tile_equals_the_region_of_its_area(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    dzi = api.get(f"/item/{item}/tiles/dzi_files/10/2_1.png?overlap=3")
    assert size_of(dzi) == (750 - 509, 500 - 253)  # level 10 is 750 x 500
    region = api.get(
        f"/item/{item}/tiles/region",
        params={"left": 509 * 4, "top": 253 * 4, "right": 3000, "bottom": 2000,
                "width": 241, "height": 247, "encoding": "PNG"},
    )  # fmt: skip
    assert psnr(pixels(dzi), pixels(region)) >= 40


def test_dzi_coarse_levels_down_to_one_pixel(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    assert size_of(api.get(f"/item/{item}/tiles/dzi_files/3/0_0.jpg")) == (6, 4)
    assert size_of(api.get(f"/item/{item}/tiles/dzi_files/0/0_0.png")) == (1, 1)


def test_dzi_tile_parameters(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    path = f"/item/{item}/tiles/dzi_files/11/1_1"
    assert api.get(f"{path}.png").headers["Content-Type"] == "image/png"
    # encoding wins over the extension, as girder_large_image ignores extensions
    assert api.get(f"{path}.png?encoding=JPEG").headers["Content-Type"] == "image/jpeg"
    assert api.get(path).headers["Content-Type"] == "image/jpeg"
    big = api.get(f"{path}.jpg?tilesize=512")
    assert size_of(big) == (512, 488)  # level 11 is 1500 x 1000
    styled = api.get(f"{path}.png", params={"style": json.dumps({"band": 1})})
    assert styled.status_code == 200
    assert pixels(styled).std(axis=2).max() == 0  # one band: gray


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/dzi_files/13/0_0.jpg", 400, "level"),
        ("/dzi_files/12/12_0.jpg", 400, "x"),
        ("/dzi_files/12/0_8.jpg", 400, "y"),
        ("/dzi_files/12/0-0.jpg", 400, "xandy"),
        ("/dzi_files/12/0_0.bmp", 400, "xandy"),
        ("/dzi_files/12/0_0.jpg?tilesize=300", 400, "tilesize"),
        ("/dzi_files/12/0_0.jpg?overlap=-1", 400, "overlap"),
        ("/dzi.dzi?encoding=TIFF", 400, "encoding"),
        ("/dzi.dzi?style=nonsense", 400, "style"),
    ],
)
def test_dzi_errors(
    api: ApiServer, sources: dict[str, str], path: str, status: int, parameter: str
) -> None:
    response = api.get(f"/item/{sources['pyramid']}/tiles{path}")
    assert response.status_code == status
    assert response.json()["parameter"] == parameter


def test_dzi_of_an_unknown_item_is_404(api: ApiServer) -> None:
    assert api.get("/item/nosuchitem/tiles/dzi.dzi").status_code == 404
    assert api.get("/item/nosuchitem/tiles/dzi_files/1/0_0.jpg").status_code == 404


def test_dzi_under_the_girder_api_root(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    assert api.get(f"/api/v1/item/{item}/tiles/dzi.dzi").status_code == 200
    ours = api.get(f"/api/v1/item/{item}/tiles/dzi_files/12/0_0.jpg")
    assert ours.headers["ETag"] == api.get(f"/item/{item}/tiles/zxy/4/0/0").headers["ETag"]


# --- IIIF --------------------------------------------------------------------------------


def iiif(api: ApiServer, item: str, path: str, **kwargs: Any) -> requests.Response:
    return api.get(f"/iiif/{item}/{path}", **kwargs)


def test_iiif_info(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    response = iiif(api, item, "info.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert 'rel="profile"' in response.headers["Link"]
    info = response.json()
    assert info["id"] == api.url(f"/iiif/{item}")
    assert info["type"] == "ImageService3" and info["profile"] == "level1"
    assert (info["width"], info["height"]) == (WIDTH, HEIGHT)
    assert info["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8, 16]}]
    ld = iiif(api, item, "info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["Content-Type"].startswith("application/ld+json")
    assert 'profile="http://iiif.io/api/image/3/context.json"' in ld.headers["Content-Type"]
    again = iiif(api, item, "info.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_iiif_base_uri_redirects_to_info(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    response = api.get(f"/iiif/{item}", allow_redirects=False)
    assert response.status_code == 303
    assert response.headers["Location"] == api.url(f"/iiif/{item}/info.json")


def test_iiif_tile_on_the_grid_is_the_cached_zxy_tile(
    api: ApiServer, sources: dict[str, str]
) -> None:
    item = sources["pyramid"]
    # scale factor 4 = tilecast level 2; tile (1, 0) covers 1024..2048 x 0..1024
    zxy = api.get(f"/item/{item}/tiles/zxy/2/1/0")
    for size in ("256,256", "256,", ",256"):
        tile = iiif(api, item, f"1024,0,1024,1024/{size}/0/default.jpg")
        assert tile.headers["ETag"] == zxy.headers["ETag"]
        assert psnr(pixels(tile), pixels(zxy)) >= 40
        assert tile.headers[CACHE] == "hit"
        link = tile.headers["Link"]
        assert f"<{api.url(f'/iiif/{item}')}/1024,0,1024,1024/256,256/0/default.jpg>" in link


def test_iiif_edge_tile_has_exactly_the_size_asked(api: ApiServer, sources: dict[str, str]) -> None:
    """OpenSeadragon's request for the last tile of scale factor 4: 952 x 976 base
    pixels at 238 x 244 -- not the region's own aspect ratio."""
    item = sources["pyramid"]
    tile = iiif(api, item, "2048,1024,952,976/238,244/0/default.png")
    assert size_of(tile) == (238, 244)
    zxy = pixels(api.get(f"/item/{item}/tiles/zxy/2/2/1?encoding=PNG"))
    assert psnr(pixels(tile), zxy[:244, :238]) >= 35


def test_iiif_regions_and_sizes(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    assert size_of(iiif(api, item, "full/max/0/default.jpg")) == (WIDTH, HEIGHT)
    assert size_of(iiif(api, item, "full/300,/0/default.jpg")) == (300, 200)
    assert size_of(iiif(api, item, "full/,100/0/default.webp")) == (150, 100)
    assert size_of(iiif(api, item, "square/!100,100/0/default.png")) == (100, 100)
    assert size_of(iiif(api, item, "pct:50,50,50,50/pct:10/0/color.jpg")) == (150, 100)
    assert size_of(iiif(api, item, "0,0,100,100/^200,200/0/default.jpg")) == (200, 200)
    region = iiif(api, item, "100,200,600,400/300,200/0/default.png")
    reference = api.get(
        f"/item/{item}/tiles/region",
        params={"left": 100, "top": 200, "right": 700, "bottom": 600, "width": 300,
                "encoding": "PNG"},
    )  # fmt: skip
    assert psnr(pixels(region), pixels(reference)) >= 40
    assert iiif(api, item, "full/max/0/default.webp").headers["Content-Type"] == "image/webp"
    assert iiif(api, item, "full/max/0/default.tif").headers["Content-Type"] == "image/tiff"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("bogus/max/0/default.jpg", 400),
        ("full/bogus/0/default.jpg", 400),
        ("full/max/bogus/default.jpg", 400),
        ("full/max/0/bogus.jpg", 400),
        ("full/max/0/default.bogus", 400),
        ("3000,0,10,10/max/0/default.jpg", 400),
        ("full/3001,/0/default.jpg", 400),
        ("full/max/90/default.jpg", 501),
        ("full/max/!0/default.jpg", 501),
        ("full/max/0/gray.jpg", 501),
        ("full/max/0/default.jp2", 501),
    ],
)
def test_iiif_errors(api: ApiServer, sources: dict[str, str], path: str, status: int) -> None:
    response = iiif(api, sources["pyramid"], path)
    assert response.status_code == status
    assert response.json()["message"]


def test_iiif_unknown_image_is_404(api: ApiServer) -> None:
    assert api.get("/iiif/nosuchitem/info.json").status_code == 404
    assert api.get("/iiif/nosuchitem/full/max/0/default.jpg").status_code == 404
    assert api.get("/iiif/a/b/info.json").status_code == 404


def test_iiif_cors_preflight(api: ApiServer, sources: dict[str, str]) -> None:
    response = requests.options(
        api.url(f"/iiif/{sources['pyramid']}/info.json"),
        headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- TileJSON ------------------------------------------------------------------------------


def test_tilejson_points_at_zxy_tiles(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    style = json.dumps({"band": 2})
    response = api.get(
        f"/item/{item}/tiles/tilejson.json",
        params={"style": style, "encoding": "PNG", "frame": "0", "other": "dropped"},
    )
    assert response.status_code == 200
    document = response.json()
    assert document["tilejson"] == "3.0.0"
    assert (document["minzoom"], document["maxzoom"]) == (0, 4)
    assert document["name"] == "pyramid.tiff"
    (template,) = document["tiles"]
    parts = urlsplit(template)
    assert parts.path == f"/item/{item}/tiles/zxy/{{z}}/{{x}}/{{y}}"
    assert parse_qs(parts.query) == {"style": [style], "encoding": ["PNG"], "frame": ["0"]}
    tile = requests.get(template.format(z=3, x=1, y=1), timeout=60)
    same = api.get(f"/item/{item}/tiles/zxy/3/1/1", params={"style": style, "encoding": "PNG"})
    assert tile.headers["Content-Type"] == "image/png"
    assert tile.content == same.content


def test_tilejson_under_the_girder_api_root(api: ApiServer, sources: dict[str, str]) -> None:
    item = sources["pyramid"]
    document = api.get(f"/api/v1/item/{item}/tiles/tilejson.json").json()
    assert document["tiles"] == [api.url(f"/api/v1/item/{item}/tiles/zxy/{{z}}/{{x}}/{{y}}")]


def test_tilejson_refuses_a_bad_style_at_once(api: ApiServer, sources: dict[str, str]) -> None:
    response = api.get(f"/item/{sources['pyramid']}/tiles/tilejson.json?style=nonsense")
    assert response.status_code == 400
    assert response.json()["parameter"] == "style"
