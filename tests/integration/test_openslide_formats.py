"""Vendor slides only OpenSlide reads, served end to end: registered through the api,
metadata, native and synthesized tiles and associated images from real workers; and the
real sample slides that fail (tests/realslides.py) answered with clean 422s.

The vendor files are written by tests/slidewriters.py (no scanner wrote them); the
references are large_image's openslide source on the same files.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import realslides, slidewriters
from tests.conftest import ApiServer
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.integration

large_image = pytest.importorskip("large_image")
large_image_source_openslide = pytest.importorskip("large_image_source_openslide")


@pytest.fixture(scope="module")
def vendor_slides(source_root: Path) -> dict[str, Path]:
    folder = source_root / "openslide-e2e"
    folder.mkdir(exist_ok=True)
    out = {
        "philips": folder / "philips.tiff",
        "leica": folder / "slide.scn",
        "ventana": folder / "gap.bif",
    }
    slidewriters.write_philips(out["philips"])
    slidewriters.write_leica(out["leica"])
    slidewriters.write_ventana(out["ventana"], reductions=(0, 2))  # level 1 synthesized
    out["vms"], _ = slidewriters.write_vms(folder / "vms")
    return out


def png_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)


def psnr(ours: np.ndarray, theirs: np.ndarray) -> float:
    mse = float(np.mean((ours.astype(float) - theirs.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", ["philips", "leica", "ventana", "vms"])
def test_a_vendor_slide_is_served_as_large_image_serves_it(
    api: ApiServer, vendor_slides: dict[str, Path], name: str
) -> None:
    path = vendor_slides[name]
    source = api.register(path)
    reference = large_image_source_openslide.open(str(path), noCache=True)

    meta = api.get(f"/item/{source}/tiles")
    assert meta.status_code == 200, meta.text
    body, expected = meta.json(), reference.getMetadata()
    for key in ("sizeX", "sizeY", "tileWidth", "tileHeight", "levels", "magnification",
                "mm_x", "mm_y", "bandCount"):  # fmt: skip
        assert body[key] == expected[key], key

    # Every level's top-left tile: native ones within 1, synthesized ones by PSNR.
    for z in range(body["levels"]):
        tile = api.get(f"/item/{source}/tiles/zxy/{z}/0/0?encoding=PNG")
        assert tile.status_code == 200, tile.text
        got = png_pixels(tile.content)
        want = reference.getTile(0, 0, z, numpyAllowed="always")
        assert got.shape == want.shape, z
        if reference._nonemptyLevelsList()[z]:
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, z
        else:
            scale = 2 ** (body["levels"] - 1 - z)
            w = min(body["tileWidth"], -(-body["sizeX"] // scale))
            h = min(body["tileHeight"], -(-body["sizeY"] // scale))
            assert psnr(got[:h, :w, :3], want[:h, :w, :3]) >= 30.0, z

    names = api.get(f"/item/{source}/tiles/images")
    assert names.status_code == 200, names.text
    assert names.json() == reference.getAssociatedImagesList() != []
    for image in names.json():
        answer = api.get(f"/item/{source}/tiles/images/{image}?encoding=PNG")
        assert answer.status_code == 200, answer.text
        want = np.asarray(reference._getAssociatedImage(image))
        assert np.array_equal(png_pixels(answer.content), want), image


def test_a_broken_vendor_slide_is_a_422_naming_its_format(
    api: ApiServer, source_root: Path
) -> None:
    folder = source_root / "openslide-broken"
    key_file, _ = slidewriters.write_vms(folder / "vms")
    (key_file.parent / "slide-map.jpg").unlink()
    response = api.http.post(api.url("/sources"), json={"path": str(key_file)}, timeout=90)
    body = assert_error(response, 422, "unsupported_image")
    assert "Hamamatsu VMS/VMU: OpenSlide cannot open it" in body["message"]
    assert str(folder) not in body["message"]


@pytest.fixture(scope="module")
def real_slides(source_root: Path) -> dict[str, Path]:
    folder = source_root / "openslide-real"
    folder.mkdir(exist_ok=True)
    try:
        return {
            name: Path(shutil.copy(realslides.path(name), folder / name))
            for name in ("unreadable.svs", "unopenable.tiff")
        }
    except realslides.Unavailable as exc:
        pytest.fail(f"the real sample slides cannot be fetched: {exc}")


@pytest.mark.parametrize("name", ["unreadable.svs", "unopenable.tiff"])
def test_the_real_broken_samples_are_clean_422s(
    api: ApiServer, real_slides: dict[str, Path], name: str
) -> None:
    """Both are TIFFs, which tilecast's TIFF reader keeps (it opens them, as their first
    directory is sound): their tile is a JSON 422. (The OpenSlide reader's own messages
    for them name the format: tests/unit/test_workers_openslide.py.)"""
    response = api.http.post(api.url("/sources"), json={"path": str(real_slides[name])}, timeout=90)
    if response.status_code == 422:
        body = assert_error(response, 422, "unsupported_image")
    else:
        assert response.status_code in (200, 201), response.text
        source = response.json()["id"]
        tile = api.get(f"/item/{source}/tiles/zxy/0/0/0?encoding=PNG")
        body = assert_error(tile, 422, "unsupported_image")
    assert "corrupt" in body["message"] or "TIFF" in body["message"]
