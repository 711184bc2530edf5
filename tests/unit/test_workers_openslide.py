"""The OpenSlide reader (workers/sources/openslide.py) on real files: openslide-python's
sample slides (tests/realslides.py) and vendor files written by tests/slidewriters.py,
against large_image's openslide source (metadata, native tiles, associated images, a
synthesized level), plus the paths it refuses or passes on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests import realslides, slidewriters
from tests.unit.conftest import register_source
from tilecast.common.errors import NotFound, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.engine import Renderer
from tilecast.workers.sources.files import ImageFile, LocalFile
from tilecast.workers.sources.openslide import OpenSlideSource
from tilecast.workers.sources.reader import Probe, ReaderDeclined
from tilecast.workers.sources.registry import ReaderRegistry, default_registry
from tilecast.workers.sources.tiff import TiffSource

large_image = pytest.importorskip("large_image")
large_image_source_openslide = pytest.importorskip("large_image_source_openslide")

MIN_PSNR = 30.0
METADATA_KEYS = (
    "levels", "sizeX", "sizeY", "tileWidth", "tileHeight", "magnification", "mm_x", "mm_y",
    "bandCount",
)  # fmt: skip


@pytest.fixture(scope="module")
def slides(source_root: Path) -> dict[str, Path]:
    """Vendor files only OpenSlide reads, written once for the module."""
    folder = source_root / "openslide-unit"
    folder.mkdir(exist_ok=True)
    out = {
        "philips": folder / "philips.tiff",
        "leica": folder / "slide.scn",
        "ventana": folder / "slide.bif",
        "ventana-gap": folder / "gap.bif",
    }
    slidewriters.write_philips(out["philips"])
    slidewriters.write_leica(out["leica"])
    slidewriters.write_ventana(out["ventana"])
    slidewriters.write_ventana(out["ventana-gap"], reductions=(0, 2))  # level 1 missing
    out["vms"], _ = slidewriters.write_vms(folder / "vms")
    return out


@pytest.fixture(scope="module")
def real() -> dict[str, Path]:
    try:
        return {name: realslides.path(name) for name in realslides.FILES}
    except realslides.Unavailable as exc:
        pytest.fail(f"the real sample slides cannot be fetched: {exc}")


@pytest.fixture
def icc_default() -> Iterator[None]:
    """large_image as it runs by default: ICC profiles applied (another test module
    turns it off for pass-through comparisons)."""
    before = large_image.config.getConfig("icc_correction", True)
    large_image.config.setConfig("icc_correction", True)
    yield
    large_image.config.setConfig("icc_correction", before)


def open_reader(path: Path, settings: Settings | None = None) -> OpenSlideSource:
    probe = Probe(LocalFile(str(path)))
    assert OpenSlideSource.can_read(probe)
    return OpenSlideSource.open(probe, settings or Settings())


def theirs(path: Path) -> object:
    return large_image_source_openslide.open(str(path), noCache=True)


def psnr(ours: np.ndarray, expected: np.ndarray) -> float:
    mse = float(np.mean((ours.astype(float) - expected.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- which reader opens what -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "vendor"),
    [("philips", "philips"), ("leica", "leica"), ("ventana", "ventana"), ("vms", "hamamatsu-vms")],
)
def test_vendor_files_open_with_openslide_and_the_tiff_reader_passes_them_on(
    slides: dict[str, Path], name: str, vendor: str
) -> None:
    with default_registry().open(LocalFile(str(slides[name])), Settings()) as source:
        assert source.name == "openslide"
        assert isinstance(source, OpenSlideSource) and source.vendor == vendor
    if name != "vms":
        with pytest.raises(ReaderDeclined, match="OpenSlide reads it"):
            TiffSource(LocalFile(str(slides[name])), Settings())


def test_the_tiff_reader_keeps_svs_and_generic_tiffs(real: dict[str, Path]) -> None:
    for name in ("small.svs", "boxes.tiff"):
        with default_registry().open(LocalFile(str(real[name])), Settings()) as source:
            assert source.name == "tiff"


def test_files_openslide_does_not_know_are_passed_on(
    images: dict[str, Path], real: dict[str, Path], tmp_path: Path
) -> None:
    # A striped TIFF is no OpenSlide format (its generic TIFF needs tiles).
    probe = Probe(LocalFile(str(images["png"])))
    assert not OpenSlideSource.can_read(probe)
    # DICOM is the DICOM reader's, even though OpenSlide reads it.
    assert not OpenSlideSource.can_read(Probe(LocalFile(str(real["boxes_0.dcm"]))))
    # An SQLite database that is no Sakura slide: recognised by its magic, declined.
    fake = tmp_path / "notaslide.svslide"
    fake.write_bytes(b"SQLite format 3\x00" + bytes(4080))
    probe = Probe(LocalFile(str(fake)))
    assert OpenSlideSource.can_read(probe)
    with pytest.raises(ReaderDeclined):
        OpenSlideSource.open(probe, Settings())


# -- parity with large_image ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small.svs", "boxes.tiff", "philips", "leica", "ventana", "vms"])
def test_metadata_tiles_and_associated_images_match_large_image(
    slides: dict[str, Path], real: dict[str, Path], name: str, icc_default: None
) -> None:
    path = real.get(name) or slides[name]
    reference = theirs(path)
    with open_reader(path) as ours:
        expected = reference.getMetadata()
        assert {key: ours.metadata[key] for key in METADATA_KEYS} == {
            key: expected[key] for key in METADATA_KEYS
        }
        assert ours.associated_names() == reference.getAssociatedImagesList()
        for image in ours.associated_names():
            want = np.asarray(reference._getAssociatedImage(image))
            got = ours.associated_image(image)
            assert got.shape == want.shape and np.array_equal(got, want), image
        native = [z for z in range(ours.levels) if ours.native_level_size(z) is not None]
        assert native
        for z in native:
            across, down = ours.grid.tiles_at(z)
            for y in range(down):
                for x in range(across):
                    got = ours.read_tile(z, x, y).array()
                    want = reference.getTile(x, y, z, numpyAllowed="always")
                    assert got.shape == want.shape, (z, x, y)
                    diff = np.abs(got.astype(int) - want.astype(int)).max()
                    assert diff <= 1, (z, x, y, diff)


def test_the_first_pages_icc_profile_is_the_one_applied(real: dict[str, Path]) -> None:
    """large_image applies the ICC profile of a TIFF's first page to every tile (the
    parity test above compares the corrected pixels): boxes.tiff has one, small.svs none."""
    from tilecast.workers.sources.tiffdir import ICC_PROFILE, TiffFile

    with TiffFile(str(real["boxes.tiff"])) as tiff:
        profile = bytes(tiff.directories[0].tags[ICC_PROFILE])
    with open_reader(real["boxes.tiff"]) as ours:
        assert ours._icc is not None and ours._icc._profile == profile
    with open_reader(real["small.svs"]) as ours:
        assert ours._icc is None


def test_native_levels_map_to_halving_levels_and_gaps_are_synthesized(
    slides: dict[str, Path], renderer: Renderer, icc_default: None
) -> None:
    path = slides["ventana-gap"]  # levels at full, 1/4 (and the thumbnail): 1/2 missing
    source_id = register_source(renderer, path)
    source = renderer.open(source_id, 1)
    assert source.name == "openslide"
    assert [source.native_level_size(z) for z in range(source.levels)] == [
        (256, 192),
        None,
        (1024, 768),
    ]
    tiles = renderer.raw_tiles(source, source_id, 1)
    reference = theirs(path)
    across, down = source.grid.tiles_at(1)
    for y in range(down):
        for x in range(across):
            got = tiles.get(1, x, y).array()
            want = reference.getTile(x, y, 1, numpyAllowed="always")
            w, h = source.tile_content(1, x, y)
            assert psnr(got[:h, :w, :3], want[:h, :w, :3]) >= MIN_PSNR, (x, y)


def test_rounded_level_downsamples_read_the_right_pixels(real: dict[str, Path]) -> None:
    """boxes.tiff's smallest levels are 75 x 62 and 37 x 31 (downsamples 4.016, 8.086):
    served as stored, each tile starting on its own first pixel."""
    with open_reader(real["boxes.tiff"]) as ours:
        assert ours.native_level_size(0) == (37, 31)
        assert ours.native_level_size(1) == (75, 62)
        edge = ours.read_tile(1, 1, 0).array()
        assert edge[:62, : 75 - 64, 3].min() == 255  # content up to the stored edge
        # Transparent beyond it (the column across the edge is partly covered).
        assert edge[:, 75 - 64 + 1 :, 3].max() == 0


def test_a_bounded_slide_serves_its_regions_bounding_box(slides: dict[str, Path]) -> None:
    """A Leica collection is 2000 x 1600 at full resolution; its one main image
    (800 x 600, at 400, 200) is what is served, as large_image serves it."""
    main = slidewriters.slide_pixels(800, 600)
    with open_reader(slides["leica"]) as ours:
        assert (ours.size_x, ours.size_y, ours.levels) == (800, 600, 3)
        tile = ours.read_tile(2, 1, 1).array()
        assert np.abs(tile[:, :, :3].astype(int) - main[256:512, 256:512]).mean() < 4


# -- refusals ----------------------------------------------------------------------------------
def test_an_unreadable_tile_is_a_422_naming_the_format(real: dict[str, Path]) -> None:
    with open_reader(real["unreadable.svs"]) as ours:
        for _ in range(2):  # the broken handle is replaced; the tile stays unreadable
            with pytest.raises(UnsupportedImage, match=r"^Aperio SVS: tile z=0 x=0 y=0 cannot"):
                ours.read_tile(0, 0, 0)


def test_an_unreadable_associated_image_is_a_422_and_the_handle_is_replaced(
    tmp_path: Path,
) -> None:
    """A Philips label whose JPEG ends early: OpenSlide fails on it and leaves its handle
    unusable (its next read fails too); the reader answers a 422 and reads on with a
    new handle."""
    label = slidewriters.jpeg_bytes(slidewriters.slide_pixels(120, 90, seed=3))
    path = tmp_path / "short-label.tiff"
    slidewriters.write_philips(path, label_jpeg=label[: len(label) // 2])
    with open_reader(path) as ours:
        assert ours.associated_names() == ["label", "macro"]
        for _ in range(2):
            with pytest.raises(
                UnsupportedImage,
                match=r"^Philips TIFF: the associated image 'label' cannot be read: Premature",
            ):
                ours.associated_image("label")
            assert ours.associated_image("macro").shape == (80, 200, 4)


def test_an_unopenable_file_is_a_422_naming_the_format(real: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage, match=r"^tiled TIFF: OpenSlide cannot open it: .*52479"):
        open_reader(real["unopenable.tiff"])


def test_openslide_messages_never_name_the_path(tmp_path: Path) -> None:
    key_file, _ = slidewriters.write_vms(tmp_path / "vms")
    (tmp_path / "vms" / "slide-map.jpg").unlink()
    with pytest.raises(UnsupportedImage) as caught:
        open_reader(key_file)
    assert str(caught.value).startswith("Hamamatsu VMS/VMU: OpenSlide cannot open it")
    assert str(tmp_path) not in str(caught.value)


def test_a_slide_beyond_the_decode_bound_is_refused(slides: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage, match="more than the 1000 this server decodes"):
        open_reader(slides["philips"], Settings(max_decode_pixels=1000))


def test_a_multi_file_slide_may_not_name_files_outside_its_folder(tmp_path: Path) -> None:
    key_file, _ = slidewriters.write_vms(tmp_path / "vms")
    (tmp_path / "outside.jpg").write_bytes((tmp_path / "vms" / "slide-0.jpg").read_bytes())
    text = key_file.read_text().replace("ImageFile=slide-0.jpg", "ImageFile=../outside.jpg")
    key_file.write_text(text)
    with pytest.raises(UnsupportedImage, match="names a file outside its folder"):
        open_reader(key_file)


class _RemoteBytes(ImageFile):
    """A file without a local path, as a Girder file read by HTTP ranges is."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.name = path.name
        self._data = path.read_bytes()
        self.size = len(self._data)

    def read(self, offset: int, count: int) -> bytes:
        return self._data[offset : offset + count]


def test_a_file_without_a_local_path_is_refused_or_passed_on(
    slides: dict[str, Path], real: dict[str, Path]
) -> None:
    registry = ReaderRegistry([OpenSlideSource])
    with pytest.raises(UnsupportedImage, match=r"Philips TIFF: .*needs the file on a local"):
        registry.open(_RemoteBytes(slides["philips"]), Settings())
    # A generic tiled TIFF goes on to the next reader (libvips reads any stream).
    with pytest.raises(ReaderDeclined):
        OpenSlideSource.open(Probe(_RemoteBytes(real["boxes.tiff"])), Settings())


def test_unknown_associated_images_are_not_found(slides: dict[str, Path]) -> None:
    with open_reader(slides["philips"]) as ours:
        assert ours.associated_names() == ["label", "macro"]
        with pytest.raises(NotFound):
            ours.associated_image("thumbnail")


# -- a Philips TIFF's JPEG tiles decoded without read_region --------------------------------------
def every_tile(source: OpenSlideSource) -> list[tuple[int, int, int]]:
    return [
        (z, x, y)
        for z in range(source.levels)
        if source.is_native_level(z)
        for y in range(source.grid.tiles_at(z)[1])
        for x in range(source.grid.tiles_at(z)[0])
    ]


@pytest.mark.parametrize(
    "options",
    [{}, {"shared_tables": True}, {"rgb": True}, {"shared_tables": True, "rgb": True}],
    ids=["ycbcr", "tables", "rgb", "rgb-tables"],
)
def test_philips_jpeg_tiles_decoded_here_are_openslides_pixels(
    tmp_path: Path, options: dict[str, bool]
) -> None:
    """The tiles OpenSlide hands out unchanged (one JPEG tile of the level's directory)
    are decoded here, in a seventh of read_region's time: every tile of every native level
    equals read_region's, whether the JPEG tables are in each tile or shared, YCbCr or
    RGB; the edge tiles of a level padded past its size still go through OpenSlide."""
    path = tmp_path / "philips.tiff"
    slidewriters.write_philips(path, 1280, 1024, **options)
    with open_reader(path) as ours, open_reader(path) as reference:
        reference._jpeg_tiles = None  # read_region for every tile
        direct = 0
        for z, x, y in every_tile(ours):
            direct += ours._jpeg_tile(z, x, y, ours._native[z]) is not None
            want = reference.read_tile(z, x, y).array()
            assert np.array_equal(ours.read_tile(z, x, y).array(), want), (z, x, y)
        # All but the padded edge tiles: x = 2 of the 640 x 512 level, x = 1 of 320 x 256.
        assert direct == len(every_tile(ours)) - 3


def _patch_byte_count(path: Path, index: int, count: int) -> None:
    """Tile ``index`` of the first directory claims ``count`` bytes."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages[0].tags["TileByteCounts"]
        size = {"SHORT": 2, "LONG": 4, "LONG8": 8}[tag.dtype_name]
        offset = tag.valueoffset + index * size
        order = "little" if tiff.byteorder == "<" else "big"
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(count.to_bytes(size, order))


def test_missing_and_damaged_philips_tiles_are_left_to_openslide(tmp_path: Path) -> None:
    """A tile of 0 bytes (a sparse slide's missing tile) is OpenSlide's transparent
    nothing; a tile cut short is OpenSlide's 422, with its message, as before."""
    path = tmp_path / "philips.tiff"
    slidewriters.write_philips(path, 1280, 1024)
    _patch_byte_count(path, 1, 0)
    _patch_byte_count(path, 2, 300)
    with open_reader(path) as ours, open_reader(path) as reference:
        reference._jpeg_tiles = None
        z = ours.levels - 1
        missing = ours.read_tile(z, 1, 0).array()
        assert (missing[:, :, 3] == 0).all()
        assert np.array_equal(missing, reference.read_tile(z, 1, 0).array())
        with pytest.raises(UnsupportedImage, match="Philips TIFF: tile z=") as raised:
            ours.read_tile(z, 2, 0)
        with pytest.raises(UnsupportedImage) as expected:
            reference.read_tile(z, 2, 0)
        assert str(raised.value) == str(expected.value)


# -- threads and closing ------------------------------------------------------------------------
def test_concurrent_reads_and_a_close_do_not_race(slides: dict[str, Path]) -> None:
    ours = open_reader(slides["philips"])
    z = ours.levels - 1
    across, down = ours.grid.tiles_at(z)
    expected = {(x, y): ours.read_tile(z, x, y).array() for y in range(down) for x in range(across)}
    failures: list[BaseException] = []

    def read_all() -> None:
        try:
            for _ in range(3):
                for (x, y), want in expected.items():
                    assert np.array_equal(ours.read_tile(z, x, y).array(), want)
        except ValueError:
            pass  # closed under it: the read is refused, never a use after free
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    ours.close()
    for thread in threads:
        thread.join()
    assert not failures
    with pytest.raises(ValueError, match="closed"):
        ours.read_tile(z, 0, 0)
    ours.close()  # idempotent


@pytest.mark.parametrize(
    ("vendor", "tags"),
    [
        ("hamamatsu", {"extratags": [(65420, 4, 1, 1, True)]}),
        ("trestle", {"software": "MedScan", "description": "Background Color=FFFFFF"}),
    ],
)
def test_ndpi_and_trestle_markers_send_a_tiff_to_openslide(
    tmp_path: Path, vendor: str, tags: dict[str, object]
) -> None:
    """No NDPI or Trestle writer here: a tiled TIFF with the vendor's marker is enough
    for the TIFF reader to leave it, and for the OpenSlide reader to recognise it."""
    import tifffile

    path = tmp_path / f"{vendor}.tif"
    tifffile.imwrite(path, slidewriters.slide_pixels(512, 512), tile=(256, 256), metadata=None,
                     **tags)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ReaderDeclined, match="OpenSlide reads it"):
        TiffSource(LocalFile(str(path)), Settings())
    probe = Probe(LocalFile(str(path)))
    assert OpenSlideSource.can_read(probe)
    try:
        source = OpenSlideSource.open(probe, Settings())
    except UnsupportedImage as exc:  # a marker alone is no slide OpenSlide opens
        assert str(exc).startswith(f"{slidevendors_name(vendor)}: OpenSlide cannot open it")
    else:
        with source:
            assert source.vendor == vendor


def slidevendors_name(vendor: str) -> str:
    from tilecast.workers.sources.slidevendors import FORMAT_NAMES

    return FORMAT_NAMES[vendor]
