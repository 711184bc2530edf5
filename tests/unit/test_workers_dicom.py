"""The DICOM WSI reader (workers/sources/dicom.py, dicomseries.py) against large_image's
dicom source, on series written by wsidicomizer and OrthancWSIDicomizer, the real
``boxes`` series and a test-made multi-plane one (tests/dicomslides.py); and the
series a DICOM reader must refuse."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests import dicomslides
from tilecast.common.errors import UnsupportedFormat, UnsupportedImage
from tilecast.common.fileidentity import same_file, stat_identity
from tilecast.common.settings import Settings
from tilecast.workers.describe import describe_path, open_path
from tilecast.workers.sources import ImageSource, open_source
from tilecast.workers.sources.dicomseries import DicomSeries

large_image = pytest.importorskip("large_image")
large_image_source_dicom = pytest.importorskip("large_image_source_dicom")
large_image.config.setConfig("icc_correction", False)

FIELDS = ["levels", "sizeX", "sizeY", "tileWidth", "tileHeight", "magnification", "mm_x",
          "mm_y", "dtype", "bandCount"]  # fmt: skip
SERIES = ["boxes", "wsidicomizer-jpeg", "wsidicomizer-j2k", "orthanc-jpeg", "orthanc-j2k"]
# Series whose full-resolution frames are JPEG baseline: passed through.
PASSED_THROUGH = {"wsidicomizer-jpeg", "orthanc-jpeg", "multiplane"}


@pytest.fixture(scope="session")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the path a source names: a file of the series or its folder."""
    root = tmp_path_factory.mktemp("dicom")
    out = {"boxes": dicomslides.boxes(root / "boxes")}
    out["wsidicomizer-jpeg"] = dicomslides.wsidicomizer_svs(root / "wsidicomizer-jpeg")
    out["wsidicomizer-j2k"] = dicomslides.wsidicomizer_svs(root / "wsidicomizer-j2k", jpeg2000=True)
    tiff = dicomslides.pyramid_tiff(root / "tiffs" / "pyramid.tiff")
    noisy = dicomslides.pyramid_tiff(root / "tiffs" / "noisy.tiff", 1200, 1000, noise=True)
    out["orthanc-jpeg"] = dicomslides.orthanc(tiff, root / "orthanc-jpeg")
    out["orthanc-j2k"] = dicomslides.orthanc(noisy, root / "orthanc-j2k", jpeg2000=True)
    out["multiplane"] = dicomslides.multiplane(out["wsidicomizer-jpeg"], root / "multiplane")
    out["sparse"], _gap = dicomslides.sparse_gap(out["orthanc-jpeg"], root / "sparse")
    return out


def reference(path: Path) -> Any:
    """large_image's dicom source on the same series (a file of it: it finds the rest)."""
    first = dicomslides.instances(path)[0] if path.is_dir() else path
    return large_image_source_dicom.open(str(first), noCache=True)


def opened(path: Path) -> ImageSource:
    return open_source(str(path), Settings())


def content(source: ImageSource, z: int, x: int, y: int) -> tuple[int, int]:
    return source.tile_content(z, x, y)


def full_resolution(folder: Path) -> Path:
    """The series' full-resolution volume instance (the first, if it is split)."""
    headers = {
        p: pydicom.dcmread(p, stop_before_pixels=True) for p in dicomslides.instances(folder)
    }
    volumes = [p for p, ds in headers.items() if ds.ImageType[2] == "VOLUME"]
    return max(volumes, key=lambda p: (int(headers[p].TotalPixelMatrixColumns), -volumes.index(p)))


def test_the_writers_wrote_what_the_tests_are_for(slides: dict[str, Path]) -> None:
    def first(name: str) -> Any:
        return pydicom.dcmread(full_resolution(slides[name]), stop_before_pixels=True)

    assert first("orthanc-jpeg").PhotometricInterpretation == "RGB"
    assert "DimensionOrganizationType" not in first("orthanc-jpeg")  # TILED_SPARSE
    orthanc_j2k = [pydicom.dcmread(p, stop_before_pixels=True)
                   for p in dicomslides.instances(slides["orthanc-j2k"])]  # fmt: skip
    assert max(int(ds.get("InConcatenationNumber", 1)) for ds in orthanc_j2k) > 1
    assert first("wsidicomizer-jpeg").Columns == 512
    assert first("wsidicomizer-j2k").file_meta.TransferSyntaxUID.name.startswith("JPEG 2000")


@pytest.mark.parametrize("name", [*SERIES, "multiplane"])
def test_metadata_matches_large_image(slides: dict[str, Path], name: str) -> None:
    ours = describe_path(str(slides[name]), Settings())
    theirs = reference(slides[name]).getMetadata()
    assert {k: ours[k] for k in FIELDS} == {k: theirs[k] for k in FIELDS}
    assert ("frames" in ours) == (name == "multiplane") and "frames" not in theirs


@pytest.mark.parametrize("name", SERIES)
def test_native_tiles_match_large_image(slides: dict[str, Path], name: str) -> None:
    """Every tile of every stored level: within 1 of large_image's, inside the image
    (large_image pads past it with black, and so does this reader for decoded frames)."""
    theirs = reference(slides[name])
    with opened(slides[name]) as source:
        native = [z for z in range(source.levels) if source.is_native_level(z)]
        assert native, name
        for z in native:
            across, down = source.grid.tiles_at(z)
            for y in range(down):
                for x in range(across):
                    tile = source.read_tile(z, x, y)
                    ours = tile.array()
                    want = theirs.getTile(x, y, z, numpyAllowed="always")
                    assert ours.shape == want.shape, (z, x, y)
                    w, h = content(source, z, x, y)
                    diff = np.abs(ours[:h, :w].astype(int) - want[:h, :w].astype(int))
                    assert diff.max() <= 1, (z, x, y)
                    if not tile.is_jpeg:
                        assert not ours[h:].any() and not ours[:, w:].any(), (z, x, y)


@pytest.mark.parametrize("name", sorted(PASSED_THROUGH - {"multiplane"}))
def test_whole_jpeg_frames_pass_through_byte_for_byte(slides: dict[str, Path], name: str) -> None:
    """A whole tile inside the image is the stored frame itself (read here with pydicom
    from the level's instance); an edge tile is decoded and padded black instead."""
    ds = pydicom.dcmread(full_resolution(slides[name]))
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    with opened(slides[name]) as source:
        top = source.levels - 1
        for index, frame in enumerate(frames):
            x, y = _frame_tile(ds, index)
            tile = source.read_tile(top, x, y)
            whole = content(source, top, x, y) == (source.tile_width, source.tile_height)
            assert tile.is_jpeg == whole, (x, y)
            if whole:
                assert tile.jpeg == frame, (x, y)


def _frame_tile(ds: Any, index: int) -> tuple[int, int]:
    """The tile a frame holds: by its per-frame position (TILED_SPARSE), else by order."""
    if ds.get("DimensionOrganizationType") == "TILED_FULL":
        across = -(-int(ds.TotalPixelMatrixColumns) // int(ds.Columns))
        return index % across, index // across
    position = ds.PerFrameFunctionalGroupsSequence[index].PlanePositionSlideSequence[0]
    column = int(position.ColumnPositionInTotalImagePixelMatrix) - 1
    row = int(position.RowPositionInTotalImagePixelMatrix) - 1
    return column // int(ds.Columns), row // int(ds.Rows)


@pytest.mark.parametrize("name", ["boxes", "wsidicomizer-jpeg", "wsidicomizer-j2k"])
def test_associated_images_match_large_image(slides: dict[str, Path], name: str) -> None:
    """large_image's ``label`` and ``macro`` (the overview), pixel for pixel; the stored
    thumbnail as ``thumbnail`` (which large_image does not list)."""
    theirs = reference(slides[name])
    with opened(slides[name]) as source:
        names = source.associated_names()
        assert set(theirs.getAssociatedImagesList()) == set(names) - {"thumbnail"}
        assert "thumbnail" in names
        for image in theirs.getAssociatedImagesList():
            want = np.asarray(theirs._getAssociatedImage(image))
            got = source.associated_image(image)
            assert got.shape == want.shape, image
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, image
        thumbnail = source.associated_image("thumbnail")
        assert thumbnail.ndim == 3 and thumbnail.shape[2] == source.band_count


def test_the_real_series_is_found_from_either_file(slides: dict[str, Path]) -> None:
    volume = slides["boxes"]
    with opened(volume) as source:
        assert (source.size_x, source.size_y, source.tile_width) == (16, 16, 64)
        assert source.associated_names() == ["thumbnail"]  # boxes_1.dcm, found beside it
    with opened(volume.parent) as source:  # the folder, as a directory source
        assert source.associated_names() == ["thumbnail"]
    # The thumbnail's own file names the same series, whose volume is beside it.
    with opened(volume.parent / "boxes_1.dcm") as source:
        assert (source.size_x, source.size_y) == (16, 16)


def test_frames_are_the_focal_planes_and_optical_paths(slides: dict[str, Path]) -> None:
    path = slides["multiplane"]
    meta = describe_path(str(path), Settings())
    assert meta["IndexRange"] == {"IndexZ": dicomslides.FOCAL_PLANES, "IndexC": 2}
    assert meta["IndexStride"] == {"IndexZ": 1, "IndexC": dicomslides.FOCAL_PLANES}
    assert meta["channels"] == list(dicomslides.OPTICAL_PATHS)
    theirs = reference(path)
    with opened(path) as source:
        top = source.levels - 1
        # The lower levels store the first plane only; the others are synthesized.
        assert [source.is_native_level(0, f) for f in range(6)] == [True] + [False] * 5
        assert all(source.is_native_level(top, f) for f in range(6))
        tiles = [source.read_tile(top, 1, 1, frame=f).array().astype(int) for f in range(6)]
        # large_image shows wsidicom's default plane: the middle focal plane, first path.
        want = theirs.getTile(1, 1, top, numpyAllowed="always").astype(int)
        assert np.abs(tiles[1] - want).max() <= 1
        for f, tile in enumerate(tiles):
            p, k = divmod(f, dicomslides.FOCAL_PLANES)
            shift = 24 * k - 40 * p
            inner = (tiles[0][64:192, 64:192] + shift).clip(0, 255)
            assert abs(float(np.mean(tile[64:192, 64:192] - inner))) < 3, f


def test_a_sparse_series_missing_tile_is_blank_as_in_large_image(
    slides: dict[str, Path],
) -> None:
    path = slides["sparse"]
    theirs = reference(path)
    with opened(path) as source:
        top = source.levels - 1
        blank = source.read_tile(top, 1, 1).array()
        assert (blank == 255).all()  # wsidicom's background: white for RGB
        assert np.array_equal(blank, theirs.getTile(1, 1, top, numpyAllowed="always"))
        assert source.read_tile(top, 0, 0).is_jpeg


@pytest.mark.parametrize("name", ["orthanc-j2k", "wsidicomizer-jpeg"])
def test_tiles_read_from_many_threads_are_the_tiles_read_one_by_one(
    slides: dict[str, Path], name: str
) -> None:
    """The engine reads a source's tiles from several threads: wsidicom's reads of one
    file share a stream (it locks around them), the decoders must not share state."""
    with opened(slides[name]) as source:
        top = source.levels - 1
        across, down = source.grid.tiles_at(top)
        coords = [(x, y) for y in range(down) for x in range(across)] * 4
        alone = {xy: _tile_bytes(source, top, *xy) for xy in coords}
        with ThreadPoolExecutor(max_workers=8) as pool:
            together = list(pool.map(lambda xy: (xy, _tile_bytes(source, top, *xy)), coords))
        assert all(alone[xy] == data for xy, data in together)


def _tile_bytes(source: ImageSource, z: int, x: int, y: int) -> bytes:
    tile = source.read_tile(z, x, y)
    return tile.jpeg if tile.jpeg is not None else tile.array().tobytes()


# -- what is refused ----------------------------------------------------------------------


def copy_series(path: Path, folder: Path) -> Path:
    shutil.copytree(path, folder)
    return folder


def largest_instance(folder: Path) -> Path:
    return max(dicomslides.instances(folder), key=lambda p: p.stat().st_size)


def test_a_truncated_instance_is_a_422_when_opened(slides: dict[str, Path], tmp_path: Path) -> None:
    for name in ("wsidicomizer-jpeg", "wsidicomizer-j2k"):  # with and without an offset table
        folder = copy_series(slides[name], tmp_path / name)
        victim = largest_instance(folder)
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(UnsupportedImage) as caught:
            opened(folder)
        message = caught.value.message
        assert message.startswith("DICOM WSI: "), message
        assert "cut short" in message or "cannot be read" in message, message
        assert str(tmp_path) not in message


def test_a_frame_whose_jpeg_declares_another_size_is_a_422_at_its_tile(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_series(slides["wsidicomizer-jpeg"], tmp_path / "sof")
    victim = largest_instance(folder)
    data = bytearray(victim.read_bytes())
    ds = pydicom.dcmread(victim)
    first = next(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    start = data.find(first)
    sof = data.find(b"\xff\xc0", start)
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width
    victim.write_bytes(bytes(data))
    with opened(folder) as source, pytest.raises(UnsupportedImage, match="30000x30000"):
        source.read_tile(source.levels - 1, 0, 0)


def _rewrite(path: Path, **attributes: Any) -> None:
    ds = pydicom.dcmread(path)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_a_sparse_series_claiming_a_huge_image_is_a_422(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_series(slides["orthanc-jpeg"], tmp_path / "huge")
    for path in dicomslides.instances(folder):
        _rewrite(path, TotalPixelMatrixColumns=10**6, TotalPixelMatrixRows=10**6)
    with pytest.raises(UnsupportedImage, match="more pixels than this server decodes"):
        opened(folder)


def test_other_dicom_is_a_415_naming_what_it_is(tmp_path: Path) -> None:
    ct = Path(shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    with pytest.raises(UnsupportedFormat) as caught:
        opened(ct)
    assert "CT Image Storage" in caught.value.message and caught.value.status == 415
    with pytest.raises(UnsupportedFormat, match="no VL Whole Slide"):
        opened(tmp_path)  # a directory of DICOM files none of which is a slide


def test_a_directory_of_two_series_is_a_422(slides: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_series(slides["orthanc-jpeg"], tmp_path / "two")
    for path in dicomslides.instances(slides["boxes"].parent):
        shutil.copy(path, folder / path.name)
    with pytest.raises(UnsupportedImage, match="instances of 2 series"):
        opened(folder)
    with opened(folder / "boxes_0.dcm") as source:  # a file names its own series
        assert source.size_x == 16


def test_instances_outside_the_roots_are_not_read(slides: dict[str, Path], tmp_path: Path) -> None:
    """A symlink beside the registered file that leads out of the source roots is not
    taken for an instance of its series."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(slides["boxes"], root / "boxes_0.dcm")
    shutil.copy(slides["boxes"].parent / "boxes_1.dcm", outside / "boxes_1.dcm")
    os.symlink(outside / "boxes_1.dcm", root / "boxes_1.dcm")
    confined = Settings(source_roots=(str(root),))
    with open_source(str(root / "boxes_0.dcm"), confined) as source:
        assert source.associated_names() == []
    with open_source(str(root / "boxes_0.dcm"), Settings(source_roots=(str(tmp_path),))) as source:
        assert source.associated_names() == ["thumbnail"]


def test_frames_of_another_size_than_tilecast_reads_are_a_422(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_series(slides["boxes"].parent, tmp_path / "small-frames")
    _rewrite(folder / "boxes_0.dcm", Rows=32, Columns=32)
    with pytest.raises(UnsupportedImage, match="frames of 32x32 pixels"):
        opened(folder / "boxes_0.dcm")


def test_a_directory_source_notices_a_rewritten_instance(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy_series(slides["orthanc-jpeg"], tmp_path / "watched")
    described = open_path(str(folder), Settings())
    described.source.close()
    assert same_file(stat_identity(str(folder)), described.identity)
    victim = largest_instance(folder)
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # in place: the folder's own times do not move
    victim.write_bytes(bytes(data))
    assert not same_file(stat_identity(str(folder)), described.identity)


def test_the_reader_holds_its_files_until_closed(slides: dict[str, Path]) -> None:
    source = opened(slides["orthanc-j2k"])
    assert isinstance(source, DicomSeries) and source.estimated_bytes > 0
    source.close()
    source.close()  # idempotent


def test_a_dicom_file_whose_header_does_not_parse_is_a_422(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(bytes(128) + b"DICM" + bytes(600))
    with pytest.raises(UnsupportedImage) as caught:
        opened(garbage)
    assert caught.value.status == 422
    assert caught.value.message.startswith("DICOM WSI: the file's header cannot be read")


def test_a_sparse_index_too_large_to_hold_is_a_422_before_it_is_built(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    """Within the pixel bound, but 2^24 tile positions of 64 x 64 frames: refused from
    the headers, before wsidicom allocates an index for them."""
    folder = copy_series(slides["orthanc-jpeg"], tmp_path / "sparse-huge")
    for path in dicomslides.instances(folder):
        _rewrite(path, TotalPixelMatrixColumns=4096 * 64, TotalPixelMatrixRows=4096 * 64,
                 Rows=64, Columns=64)  # fmt: skip
    with pytest.raises(UnsupportedImage, match="sparse tile index of the series is too large"):
        opened(folder)


def test_a_series_without_a_pyramid_level_is_a_422(slides: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "thumbnail-only"
    folder.mkdir()
    shutil.copy(slides["boxes"].parent / "boxes_1.dcm", folder / "boxes_1.dcm")
    with pytest.raises(UnsupportedImage, match="has no pyramid level"):
        opened(folder / "boxes_1.dcm")
