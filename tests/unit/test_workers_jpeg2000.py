"""JPEG 2000 (issue 16): plain jp2 / j2k files by the jpeg2000 reader against large_image's
openjpeg source, and Aperio SVS with JPEG 2000 tiles (33003 YCbCr, 33005 RGB) by the
TIFF reader against large_image's openslide source (which large_image picks for .svs).

Native tiles must match within 1 per channel (both sides decode with the same OpenJPEG:
they match exactly here); levels tilecast synthesizes (large_image subsamples or
resamples them) within PSNR 30 dB inside the image. Headers that lie are a 422.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import hostile
from tests.images_jpeg2000 import (
    COMPRESSION_RGB,
    COMPRESSION_YCBCR,
    JP2_MAG,
    JP2_MICRONS,
    SVS_MAG,
    SVS_MPP,
    associated_jpeg,
    write_jp2,
    write_jp2k_svs,
)
from tests.unit.conftest import register_source
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.engine import Renderer
from tilecast.workers.sources import open_source, openjpeg
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.jpeg2000 import Jpeg2000Source
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.synthesis import RawTiles

large_image = pytest.importorskip("large_image")
openjpeg_source = pytest.importorskip("large_image_source_openjpeg")
openslide_source = pytest.importorskip("large_image_source_openslide")
large_image.config.setConfig("icc_correction", False)

FIELDS = ["levels", "sizeX", "sizeY", "tileWidth", "tileHeight", "magnification", "mm_x",
          "mm_y", "dtype", "bandCount"]  # fmt: skip
SYNTHESIZED_PSNR = 30.0

# name -> (file name, width, height, write_jp2 options). Chosen for large_image's three
# geometries: the coarsest resolution fits 256-512 tiles (every level native); few
# resolutions (512 tiles, the coarsest levels not in the codestream); many (256 tiles,
# more resolutions than levels).
JP2_FILES: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    "tiled": ("tiled.jp2", 1000, 700, {"resolutions": 4, "tile": (256, 256)}),
    "few-resolutions": ("few.jp2", 3000, 2000, {"resolutions": 3}),
    "many-resolutions": ("many.jp2", 600, 500, {"resolutions": 6}),
    "codestream": ("raw.j2k", 1300, 900, {"resolutions": 4, "tile": (512, 512)}),
    "described": ("described.jp2", 800, 600,
                  {"resolutions": 3, "scan_info": True, "associated": True}),
}  # fmt: skip


@pytest.fixture(scope="module")
def jp2_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jp2")
    return {
        name: write_jp2(root / file, width, height, **options)
        for name, (file, width, height, options) in JP2_FILES.items()
    }


@pytest.fixture(scope="module")
def svs_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("jp2k-svs")
    return {
        compression: write_jp2k_svs(root / f"slide-{compression}.svs", compression)
        for compression in (COMPRESSION_YCBCR, COMPRESSION_RGB)
    }


def psnr(ours: np.ndarray, theirs: np.ndarray) -> float:
    mse = float(np.mean((ours.astype(float) - theirs.astype(float)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def corner_tiles(source: ImageSource, z: int) -> list[tuple[int, int]]:
    across, down = source.grid.tiles_at(z)
    return sorted({(0, 0), (across - 1, down - 1), (across // 2, down // 2)})


def raw_tiles(renderer: Renderer, path: Path) -> RawTiles:
    """The source's unstyled tiles through the worker's path (native reads, synthesis)."""
    source_id = register_source(renderer, path)
    return renderer.raw_tiles(renderer.open(source_id, 1), source_id, 1)


def compare_tiles(tiles: RawTiles, reference: Any, *, bands: int = 3) -> None:
    """Every level's corner and middle tiles, inside the image: native ones within 1,
    the others by PSNR."""
    source = tiles.source
    for z in range(source.levels):
        for x, y in corner_tiles(source, z):
            theirs = reference.getTile(x, y, z, numpyAllowed="always")[:, :, :bands]
            ours = tiles.get(z, x, y).array()
            w, h = source.tile_content(z, x, y)
            ours, theirs = ours[:h, :w, :bands].astype(int), theirs[:h, :w].astype(int)
            if source.is_native_level(z):
                assert np.abs(ours - theirs).max() <= 1, (z, x, y)
            else:
                assert psnr(ours, theirs) >= SYNTHESIZED_PSNR, (z, x, y)


# -- plain jp2 / j2k ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(JP2_FILES))
def test_jp2_metadata_and_tiles_match_large_image(
    jp2_files: dict[str, Path], renderer: Renderer, name: str
) -> None:
    path = jp2_files[name]
    reference = openjpeg_source.open(str(path))
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, Jpeg2000Source)
        ours = source.metadata
        theirs = reference.getMetadata()
        assert {k: ours[k] for k in FIELDS} == {k: theirs[k] for k in FIELDS}
    compare_tiles(raw_tiles(renderer, path), reference)


def test_few_resolutions_leave_the_coarsest_levels_to_synthesis(
    jp2_files: dict[str, Path],
) -> None:
    """3000 x 2000 in three resolutions: 512 tiles, four levels, the coarsest one (a
    fourth halving the codestream lacks) synthesized."""
    with open_source(str(jp2_files["few-resolutions"]), Settings()) as source:
        assert (source.levels, source.tile_width) == (4, 512)
        assert [source.native_level_size(z) for z in range(4)] == [
            None, (750, 500), (1500, 1000), (3000, 2000)
        ]  # fmt: skip


def test_optrascan_xml_and_associated_boxes(jp2_files: dict[str, Path]) -> None:
    path = jp2_files["described"]
    reference = openjpeg_source.open(str(path))
    with open_source(str(path), Settings()) as source:
        assert source.magnification == JP2_MAG
        assert source.mm_x == source.mm_y == pytest.approx(JP2_MICRONS * 1e-3)
        assert source.associated_names() == reference.getAssociatedImagesList()
        assert source.associated_names() == ["label", "macro"]
        for name, (width, height) in {"macro": (640, 240), "label": (200, 200)}.items():
            ours = source.associated_image(name)
            theirs, _mime = reference.getAssociatedImage(name, format="numpy")
            assert ours.shape == theirs.shape == (height, width, 3)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        assert associated_jpeg(10, 10, flip=False)  # the writer the boxes hold


def test_a_raw_codestream_is_recognised_by_content(
    jp2_files: dict[str, Path], tmp_path: Path
) -> None:
    renamed = tmp_path / "no-extension"
    renamed.write_bytes(jp2_files["codestream"].read_bytes())
    with open_source(str(renamed), Settings()) as source:
        assert isinstance(source, Jpeg2000Source)


def test_the_decode_of_a_tile_is_bounded() -> None:
    """The area is checked against the bound before OpenJPEG allocates it."""
    area = openjpeg.Area(0, 0, 4096, 4096)
    with pytest.raises(openjpeg.OpenJpegError, match="not decoded"):
        openjpeg.decode_area(None, openjpeg.CODEC_J2K, area, 512 * 512)  # type: ignore[arg-type]


# -- hostile jp2 / j2k ------------------------------------------------------------------------


def _lying(data: bytes, name: str) -> bytes:
    codestream = data.find(b"\xff\x4f\xff\x51")
    rewrites = {
        "siz-30000": lambda: hostile._j2k_siz(data, 30000, at=codestream),
        "siz-2000": lambda: hostile._j2k_siz(data, 2000, at=codestream),
        "cut": lambda: data[: len(data) * 2 // 3],
        "cut-in-header": lambda: data[: codestream + 60],
    }
    return rewrites[name]()


@pytest.mark.parametrize("kind", ["codestream", "tiled"])
@pytest.mark.parametrize("lie", ["siz-30000", "siz-2000", "cut", "cut-in-header"])
def test_a_header_that_lies_is_refused_at_open(
    jp2_files: dict[str, Path], tmp_path: Path, kind: str, lie: str
) -> None:
    """A SIZ declaring more pixels (or tiles) than the codestream holds, a jp2 whose image
    header and SIZ disagree, a file cut short: 422 when opened, naming JPEG 2000."""
    path = tmp_path / f"{lie}{jp2_files[kind].suffix}"
    path.write_bytes(_lying(jp2_files[kind].read_bytes(), lie))
    with pytest.raises(UnsupportedImage, match="JPEG 2000") as raised:
        open_source(str(path), Settings())
    assert str(tmp_path) not in str(raised.value)


def test_more_pixels_than_the_bound_is_refused(jp2_files: dict[str, Path]) -> None:
    settings = Settings(max_decode_pixels=1000 * 699)
    with pytest.raises(UnsupportedImage, match="more pixels than this server decodes"):
        open_source(str(jp2_files["tiled"]), settings)


# -- JPEG 2000 tiles in Aperio SVS ------------------------------------------------------------


@pytest.mark.parametrize("compression", [COMPRESSION_YCBCR, COMPRESSION_RGB])
def test_jpeg2000_svs_matches_openslide(
    svs_files: dict[int, Path], renderer: Renderer, compression: int
) -> None:
    """Aperio's JPEG 2000 SVS through tilecast's TIFF reader: metadata, native levels
    (the 4x and 16x ones, rounded down as stored) and associated images as large_image's
    openslide source reads them; 33003's Y, Cb, Cr converted to RGB as OpenSlide does."""
    path = svs_files[compression]
    reference = openslide_source.open(str(path))
    assert type(large_image.open(str(path))).__name__ == type(reference).__name__
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, TiffSource)
        ours, theirs = source.metadata, reference.getMetadata()
        # OpenSlide hands out RGBA: its bandCount is 4 for the same RGB pixels.
        same = [field for field in FIELDS if field != "bandCount"]
        assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}
        assert (ours["magnification"], ours["mm_x"]) == (SVS_MAG, SVS_MPP * 1e-3)
        assert [source.native_level_size(z) for z in range(source.levels)] == [
            (156, 112), None, (625, 450), None, (2500, 1800)
        ]  # fmt: skip
        assert source.associated_names() == reference.getAssociatedImagesList()
    compare_tiles(raw_tiles(renderer, path), reference)


def test_tiff_jpeg2000_tiles_whose_header_lies_are_refused(tmp_path: Path) -> None:
    """The hostile corpus's JPEG 2000 TIFFs (a SIZ, or a jp2 image header and SIZ,
    declaring 30000^2 in a 256^2 tile): a 422 naming the header, before any decode."""
    for name in ("tile-j2k-siz-30000.tiff", "tile-jp2-ihdr-30000.tiff"):
        path = hostile.make_hostile_files(tmp_path)[name]
        with (
            open_source(str(path), Settings()) as source,
            pytest.raises(UnsupportedImage, match="header declares 30000x30000"),
        ):
            source.read_tile(source.levels - 1, 1, 1)


# -- stored levels rounded down (boxes.tiff) ---------------------------------------------------


def test_levels_stored_rounded_down_are_served_as_stored() -> None:
    """The real boxes.tiff stores 75x62 and 37x31 where the grid counts 75x63 and 38x32:
    every tile of every level equals large_image's tiff source's over the grid's area,
    the sliver included (the file's own tile padding, as large_image hands it out)."""
    from tests import realslides

    tiff_source = pytest.importorskip("large_image_source_tiff")
    path = realslides.path("boxes.tiff")
    reference = tiff_source.open(str(path))
    with open_source(str(path), Settings()) as source:
        assert [source.native_level_size(z) for z in range(source.levels)] == [
            (37, 31), (75, 62), (150, 125), (300, 250)
        ]  # fmt: skip
        for z in range(source.levels):
            across, down = source.grid.tiles_at(z)
            for y in range(down):
                for x in range(across):
                    w, h = source.grid.tile_size(z, x, y)
                    ours = source.read_tile(z, x, y).array()[:h, :w].astype(int)
                    theirs = reference.getTile(x, y, z, numpyAllowed="always")[:h, :w, :3]
                    assert np.abs(ours - theirs).max() <= 1, (z, x, y)
