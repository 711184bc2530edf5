"""DICOM whole-slide series served end to end: registered through the api (as a file of
the series or as its directory), metadata, native, passed-through and synthesized tiles,
frames, associated images and regions from real workers, against large_image's dicom
source on the same files; and broken or foreign DICOM answered with clean 422s and 415s.

The series are written by wsidicomizer and OrthancWSIDicomizer, plus the real two-file
``boxes`` series and a test-made multi-plane one (tests/dicomslides.py).
"""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from tests import dicomslides
from tests.conftest import ApiServer
from tests.integration.test_bad_input import assert_error
from tilecast.common.grid import Grid

pytestmark = pytest.mark.integration

large_image = pytest.importorskip("large_image")
large_image_source_dicom = pytest.importorskip("large_image_source_dicom")
large_image.config.setConfig("icc_correction", False)

FIELDS = ("sizeX", "sizeY", "tileWidth", "tileHeight", "levels", "magnification", "mm_x",
          "mm_y", "dtype", "bandCount")  # fmt: skip
SYNTHESIZED_PSNR = 30.0


@pytest.fixture(scope="module")
def series(source_root: Path) -> dict[str, Path]:
    """name -> what is registered: a file of the series, or its directory."""
    root = source_root / "dicom-e2e"
    out = {"boxes": dicomslides.boxes(root / "boxes")}
    out["wsidicomizer"] = dicomslides.wsidicomizer_svs(root / "wsidicomizer")
    noisy = dicomslides.pyramid_tiff(root / "tiffs" / "noisy.tiff", 1200, 1000, noise=True)
    out["orthanc-j2k"] = dicomslides.orthanc(noisy, root / "orthanc-j2k", jpeg2000=True)
    out["multiplane"] = dicomslides.multiplane(out["wsidicomizer"], root / "multiplane")
    return out


def reference(path: Path) -> Any:
    first = dicomslides.instances(path)[0] if path.is_dir() else path
    return large_image_source_dicom.open(str(first), noCache=True)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"))
    return array


def psnr(ours: np.ndarray, theirs: np.ndarray) -> float:
    mse = float(np.mean((ours.astype(float) - theirs.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def content(meta: dict[str, Any], z: int, x: int, y: int) -> tuple[int, int]:
    """The size of tile (z, x, y)'s content (past it, large_image pads with black)."""
    return Grid.from_metadata(meta).tile_size(z, x, y)


@pytest.mark.parametrize("name", ["boxes", "wsidicomizer", "orthanc-j2k"])
def test_a_series_is_served_as_large_image_serves_it(
    api: ApiServer, series: dict[str, Path], name: str
) -> None:
    path = series[name]
    source = api.register(path)
    theirs = reference(path)
    meta = api.get(f"/item/{source}/tiles")
    assert meta.status_code == 200, meta.text
    body, expected = meta.json(), theirs.getMetadata()
    assert {k: body[k] for k in FIELDS} == {k: expected[k] for k in FIELDS}
    assert "frames" not in body

    # The first and last tile of every level: stored levels within 1 of large_image,
    # synthesized ones by PSNR, inside the image.
    stored = {level.level for level in theirs._dicom.pyramids[0]}
    grid = Grid.from_metadata(body)
    for z in range(body["levels"]):
        across, down = grid.tiles_at(z)
        for x, y in sorted({(0, 0), (across - 1, down - 1)}):
            tile = api.get(f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=PNG")
            assert tile.status_code == 200, tile.text
            ours = png_pixels(tile.content)
            want = theirs.getTile(x, y, z, numpyAllowed="always")[:, :, :3]
            w, h = content(body, z, x, y)
            assert ours.shape == want.shape, (z, x, y)
            if body["levels"] - 1 - z in stored:
                assert np.abs(ours[:h, :w].astype(int) - want[:h, :w].astype(int)).max() <= 1
            else:
                assert psnr(ours[:h, :w], want[:h, :w]) >= SYNTHESIZED_PSNR, (z, x, y)

    # A region of the full resolution, PNG: within 1 of large_image's.
    width, height = min(body["sizeX"], 700), min(body["sizeY"], 500)
    query = {"left": 3, "top": 5, "right": width, "bottom": height, "encoding": "PNG"}
    region = api.get(f"/item/{source}/tiles/region", params=query)
    assert region.status_code == 200, region.text
    data, _mime = theirs.getRegion(
        region={"left": 3, "top": 5, "right": width, "bottom": height}, encoding="PNG"
    )
    ours, want = png_pixels(region.content), png_pixels(bytes(data))
    assert ours.shape == want.shape
    assert np.abs(ours.astype(int) - want.astype(int)).max() <= 1

    names = api.get(f"/item/{source}/tiles/images")
    assert names.status_code == 200, names.text
    assert set(theirs.getAssociatedImagesList()) == set(names.json()) - {"thumbnail"}
    for image in theirs.getAssociatedImagesList():
        answer = api.get(f"/item/{source}/tiles/images/{image}?encoding=PNG")
        assert answer.status_code == 200, answer.text
        want = np.asarray(theirs._getAssociatedImage(image).convert("RGB"))
        assert np.abs(png_pixels(answer.content).astype(int) - want.astype(int)).max() <= 1


def test_stored_jpeg_frames_reach_the_client_as_stored(
    api: ApiServer, series: dict[str, Path]
) -> None:
    """A whole JPEG frame asked as JPEG without a style is the file's own bytes."""
    folder = series["wsidicomizer"]
    source = api.register(folder)
    meta = api.get(f"/item/{source}/tiles").json()
    headers = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()}
    volume = max(
        (p for p, ds in headers.items() if ds.ImageType[2] == "VOLUME"),
        key=lambda p: int(headers[p].TotalPixelMatrixColumns),
    )
    ds = pydicom.dcmread(volume)
    first = next(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    tile = api.get(f"/item/{source}/tiles/zxy/{meta['levels'] - 1}/0/0?encoding=JPEG")
    assert tile.status_code == 200, tile.text
    assert tile.content == first


def test_a_file_and_its_directory_name_the_same_series(
    api: ApiServer, series: dict[str, Path]
) -> None:
    folder = series["orthanc-j2k"]
    by_folder = api.register(folder)
    by_file = api.register(dicomslides.instances(folder)[-1])  # the smallest level's file
    assert by_folder != by_file
    one, other = (api.get(f"/item/{s}/tiles").json() for s in (by_folder, by_file))
    assert one == other
    tiles = [api.get(f"/item/{s}/tiles/zxy/3/1/1?encoding=PNG") for s in (by_folder, by_file)]
    assert all(tile.status_code == 200 for tile in tiles)
    assert np.array_equal(png_pixels(tiles[0].content), png_pixels(tiles[1].content))


def test_focal_planes_and_optical_paths_are_frames(api: ApiServer, series: dict[str, Path]) -> None:
    path = series["multiplane"]
    source = api.register(path)
    meta = api.get(f"/item/{source}/tiles").json()
    assert len(meta["frames"]) == dicomslides.FOCAL_PLANES * len(dicomslides.OPTICAL_PATHS)
    assert meta["IndexRange"] == {"IndexZ": dicomslides.FOCAL_PLANES, "IndexC": 2}
    top = meta["levels"] - 1
    tiles = []
    for frame in range(len(meta["frames"])):
        tile = api.get(f"/item/{source}/tiles/zxy/{top}/0/0?encoding=PNG&frame={frame}")
        assert tile.status_code == 200, tile.text
        tiles.append(png_pixels(tile.content).astype(int))
    # large_image shows the middle focal plane of the first optical path: frame 1.
    want = reference(path).getTile(0, 0, top, numpyAllowed="always")[:, :, :3].astype(int)
    assert np.abs(tiles[1] - want).max() <= 1
    assert all(np.abs(tiles[f] - tiles[1]).mean() > 10 for f in (0, 2, 3, 4, 5))
    # The lower levels store the first plane only: the others are synthesized.
    low = api.get(f"/item/{source}/tiles/zxy/0/0/0?encoding=PNG&frame=4")
    assert low.status_code == 200, low.text


def test_a_cut_series_is_a_422_and_other_dicom_a_415(
    api: ApiServer, series: dict[str, Path], source_root: Path
) -> None:
    cut = source_root / "dicom-broken" / "cut"
    shutil.copytree(series["wsidicomizer"], cut)
    victim = max(cut.iterdir(), key=lambda p: p.stat().st_size)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    response = api.http.post(api.url("/sources"), json={"path": str(cut)}, timeout=90)
    body = assert_error(response, 422, "unsupported_image")
    assert body["message"].startswith("DICOM WSI: "), body
    assert str(source_root) not in body["message"]

    ct = source_root / "dicom-broken" / "ct.dcm"
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), ct)
    response = api.http.post(api.url("/sources"), json={"path": str(ct)}, timeout=90)
    body = assert_error(response, 415, "unsupported_format")
    assert "CT Image Storage" in body["message"]
