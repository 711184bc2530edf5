"""Frames, OME-XML layouts, associated images: the reader side, against large_image.

Each OME / multi-frame layout is written here with tifffile and opened both by tilecast's
reader (``describe_path``, ``read_tile``) and by ``large_image.open`` (its ``ometiff``
source for OME files, its ``tiff`` source otherwise); metadata must be equal and each
frame's native tiles identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
import tifffile

from tests.images_frames import ome_xml
from tilecast.common.errors import BadRequest, NotFound
from tilecast.common.settings import Settings
from tilecast.workers.associated import fit_size, resize
from tilecast.workers.describe import describe_path
from tilecast.workers.sources import open_source
from tilecast.workers.sources.frameinfo import frame_metadata
from tilecast.workers.sources.ome import OmeUnsupported, parse_ome
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.sources.tiffassociated import reorient

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)
from large_image.tilesource.base import TileSource  # noqa: E402
from large_image.tilesource.utilities import _calculateWidthHeight  # noqa: E402

SIZE_X, SIZE_Y = 300, 200
TILE = {"tile": (128, 128), "compression": "zlib", "photometric": "minisblack", "metadata": None}


def plane(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 60000, (SIZE_Y, SIZE_X), dtype=np.uint16)


def write_pages(path: Path, count: int, descriptions: dict[int, str], subifds: bool) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for index in range(count):
            extra: dict[str, Any] = {}
            if index in descriptions:
                extra["description"] = descriptions[index].encode()
            if subifds:
                extra["subifds"] = 1
            data = plane(index)
            tif.write(data, **TILE, **extra)
            if subifds:
                tif.write(data[::2, ::2], subfiletype=1, **TILE)
    return path


def ome(
    channels: int,
    z: int,
    t: int,
    *,
    tiffdata: str = "per-plane",
    planes: bool = True,
    names: list[str] | None = None,
    physical: str = 'PhysicalSizeX="0.5" PhysicalSizeY="0.5"',
) -> str:
    """OME-XML in the layouts writers produce: one TiffData per plane (Bio-Formats),
    one TiffData for all planes (tifffile), or none."""
    chans = "".join(
        f'<Channel ID="Channel:0:{c}" SamplesPerPixel="1"'
        + (f' Name="{names[c]}"' if names else "")
        + "/>"
        for c in range(channels)
    )
    body, plane_xml = [], []
    index = 0
    for tt in range(t):
        for zz in range(z):
            for c in range(channels):
                if tiffdata == "per-plane":
                    body.append(
                        f'<TiffData FirstC="{c}" FirstT="{tt}" FirstZ="{zz}" IFD="{index}" '
                        'PlaneCount="1"/>'
                    )
                plane_xml.append(f'<Plane TheC="{c}" TheT="{tt}" TheZ="{zz}"/>')
                index += 1
    if tiffdata == "one":
        body.append(f'<TiffData IFD="0" PlaneCount="{index}"/>')
    elif tiffdata == "empty":
        body.append("<TiffData/>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0" Name="x">'
        f'<Pixels DimensionOrder="XYCZT" ID="Pixels:0" {physical} SizeC="{channels}" '
        f'SizeT="{t}" SizeX="{SIZE_X}" SizeY="{SIZE_Y}" SizeZ="{z}" Type="uint16">'
        f"{chans}{''.join(body)}{''.join(plane_xml) if planes else ''}"
        "</Pixels></Image></OME>"
    )


def assert_same_as_large_image(path: Path, expected_source: str) -> dict[str, Any]:
    theirs = large_image.open(str(path))
    assert theirs.name == expected_source
    ours = describe_path(str(path), Settings())
    assert ours == json.loads(json.dumps(theirs.getMetadata()))
    frames = len(ours.get("frames", [None]))
    with open_source(str(path), Settings()) as source:
        for frame in sorted({0, frames // 2, frames - 1}):
            for z in range(source.levels):
                if not source.is_native_level(z, frame):
                    continue
                ours_tile = source.read_tile(z, 0, 0, frame).array()
                expected = theirs.getTile(0, 0, z, frame=frame, numpyAllowed="always")
                w, h = source.tile_content(z, 0, 0, frame)
                assert np.array_equal(ours_tile[:h, :w], expected[:h, :w]), (frame, z)
    return ours


# --- OME layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "channels", "z", "t", "options"),
    [
        ("bioformats-czt", 2, 3, 2, {"names": ["A", "B"]}),
        ("tifffile-one-tiffdata", 3, 1, 2, {"tiffdata": "one", "names": ["r", "g", "b"]}),
        ("z-stack-no-planes", 1, 4, 1, {"planes": False}),
        ("duplicate-names", 3, 1, 1, {"names": ["x", "x", "y"]}),
        ("nanometres", 2, 1, 1, {"physical": 'PhysicalSizeX="250" PhysicalSizeXUnit="nm"'}),
        ("single-plane", 1, 1, 1, {}),
        ("empty-tiffdata", 3, 1, 1, {"tiffdata": "empty", "names": ["p", "q", "r"]}),
        ("empty-tiffdata-no-planes", 2, 1, 1, {"tiffdata": "empty", "planes": False}),
        # No TiffData at all: the OME source refuses it, the TIFF source reads pages.
        (
            "no-tiffdata",
            4,
            1,
            1,
            {"tiffdata": "none", "planes": False, "names": ["a", "b", "c", "d"]},
        ),
    ],
)
def test_ome_layouts_match_large_image(
    tmp_path: Path, layout: str, channels: int, z: int, t: int, options: dict[str, Any]
) -> None:
    count = channels * z * t
    xml = ome(channels, z, t, **options)
    path = write_pages(tmp_path / f"{layout}.ome.tif", count, {0: xml}, subifds=True)
    expected = "tiff" if layout == "no-tiffdata" else "ometiff"
    ours = assert_same_as_large_image(path, expected)
    assert len(ours["frames"]) == count


def test_generated_ome_fixture_matches(tmp_path: Path) -> None:
    layout = parse_ome(ome_xml().encode())
    assert layout is not None
    assert len(layout.frames) == 12 and layout.ifds == list(range(12))
    assert layout.mm_x == pytest.approx(0.00025)


def test_ome_frames_follow_tiffdata_not_page_order(tmp_path: Path) -> None:
    """TiffData may list pages out of order: frame n is the page its entry names."""
    xml = ome(2, 1, 2, names=["a", "b"]).replace('IFD="1"', 'IFD="X"')
    xml = xml.replace('IFD="2"', 'IFD="1"').replace('IFD="X"', 'IFD="2"')
    path = write_pages(tmp_path / "shuffled.ome.tif", 4, {0: xml}, subifds=True)
    assert_same_as_large_image(path, "ometiff")
    with open_source(str(path), Settings()) as source:
        full = source.levels - 1
        assert np.array_equal(source.read_tile(full, 0, 0, 1).array()[:128, :128, 0],
                              plane(2)[:128, :128])  # fmt: skip


def test_ome_with_several_planes_per_frame_reads_as_pages(tmp_path: Path) -> None:
    """The OME source refuses it; large_image then opens it with its TIFF source."""
    xml = ome(2, 2, 1, tiffdata="one", planes=False)  # PlaneCount 4, no Plane list
    path = write_pages(tmp_path / "refused.ome.tif", 4, {0: xml}, subifds=True)
    with pytest.raises(OmeUnsupported):
        parse_ome(xml.encode())
    ours = assert_same_as_large_image(path, "tiff")
    assert [frame["Frame"] for frame in ours["frames"]] == [0, 1, 2, 3]


@pytest.mark.parametrize("description", [b"", b"not xml", b"<a/>", b"<OME/>", b"{}"])
def test_not_ome(description: bytes) -> None:
    assert parse_ome(description) is None


# --- frames described by JSON (large_image's own multi-frame output) ----------------------


def test_json_described_frames_match_large_image(tmp_path: Path) -> None:
    descriptions = {}
    for index in range(6):
        record: dict[str, Any] = {"frame": {"IndexC": index % 3, "IndexZ": index // 3}}
        if index == 0:
            record["channels"] = ["DAPI", "CD3", "CD8"]
        descriptions[index] = json.dumps(record)
    path = write_pages(tmp_path / "described.tiff", 6, descriptions, subifds=False)
    ours = assert_same_as_large_image(path, "tiff")
    assert ours["channelmap"] == {"DAPI": 0, "CD3": 1, "CD8": 2}
    assert ours["IndexRange"] == {"IndexC": 3, "IndexZ": 2}


def test_plain_pages_are_numbered_frames(tmp_path: Path) -> None:
    path = write_pages(tmp_path / "pages.tiff", 3, {}, subifds=True)
    ours = assert_same_as_large_image(path, "tiff")
    assert ours["frames"] == [{"Frame": i, "Index": i} for i in range(3)]


def test_frame_out_of_range_is_a_bad_request(tmp_path: Path) -> None:
    path = write_pages(tmp_path / "two.tiff", 2, {}, subifds=False)
    with open_source(str(path), Settings()) as source:
        source.check_tile(1, 0, 0, 1)
        for frame in (2, -1, 10**6):
            with pytest.raises(BadRequest) as caught:
                source.check_tile(1, 0, 0, frame)
            assert caught.value.parameter == "frame"


# --- frame_metadata against large_image's _addMetadataFrameInformation ----------------------


def _theirs(frames: list[dict[str, Any]], channels: list[str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"frames": json.loads(json.dumps(frames))}
    source = object.__new__(TileSource)  # only the frame bookkeeping is used
    source._addMetadataFrameInformation(metadata, channels)
    return metadata


@pytest.mark.parametrize(
    ("frames", "channels"),
    [
        ([{} for _ in range(4)], None),
        ([{"IndexC": c} for c in range(3)], ["a", "b", "c"]),
        ([{"IndexC": c} for c in range(3)], ["a", "b"]),  # too few names: none reported
        ([{"IndexC": i % 2, "IndexT": i // 2} for i in range(6)], ["x", "y", "z"]),
        ([{"IndexZ": i % 3, "IndexXY": i // 3} for i in range(6)], None),
        ([{"IndexC": i % 2, "IndexZ": i // 2} for i in range(4)], ["only one"]),
        ([{"IndexZ": i, "ValueZ": 0.5 * i} for i in range(3)], None),
        ([{"IndexT": i % 2, "ValueT": [10, 20][i % 2], "IndexC": i // 2} for i in range(4)], None),
    ],
)
def test_frame_metadata_equals_large_image(
    frames: list[dict[str, Any]], channels: list[str] | None
) -> None:
    assert frame_metadata(frames, channels) == _theirs(frames, channels)


# --- associated-image helpers against large_image's -------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "image_w", "image_h"),
    [(100, None, 300, 200), (None, 90, 800, 300), (700, 300, 300, 225), (50, 50, 1, 1000),
     (1000, 10, 300, 200), (7, None, 3, 9000), (None, 1, 5000, 3)],
)  # fmt: skip
def test_fit_size_equals_large_image(
    width: int | None, height: int | None, image_w: int, image_h: int
) -> None:
    theirs = _calculateWidthHeight(width, height, image_w, image_h)[:2]
    assert fit_size(width, height, image_w, image_h) == theirs


@pytest.mark.parametrize("orientation", [None, *range(1, 9)])
def test_reorient_equals_large_image(orientation: int | None) -> None:
    pixels = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2)
    source = object.__new__(large_image.tilesource.AvailableTileSources["tiff"])
    expected = source._reorient_numpy_image(pixels, orientation)
    assert np.array_equal(reorient(pixels, orientation), expected)


def test_resize_keeps_bands() -> None:
    gray = np.full((10, 20, 1), 7, dtype=np.uint8)
    assert resize(gray, 5, 3).shape == (3, 5, 1)
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    assert resize(rgba, 40, 20).shape == (20, 40, 4)


def test_associated_images_by_subfile_type_and_description(tmp_path: Path) -> None:
    """Pages without a name in their description are named by NewSubfileType; names that
    are not 4-20 letters or digits are ignored -- as in large_image."""
    path = tmp_path / "assoc.tiff"
    rgb = np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    small = rgb[:60, :90]
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, tile=(128, 128), photometric="rgb", compression="zlib", metadata=None)
        tif.write(rgb[::2, ::2], tile=(128, 128), photometric="rgb", compression="zlib",
                  metadata=None, subfiletype=1)  # fmt: skip
        tif.write(small, photometric="rgb", subfiletype=1, metadata=None)
        tif.write(small[::-1], photometric="rgb", subfiletype=9, metadata=None)
        tif.write(small, photometric="rgb", description="x", metadata=None)
        tif.write(small[:, ::-1], photometric="rgb", description="Scanner v1\noverview 3",
                  metadata=None)  # fmt: skip
    theirs = large_image.open(str(path))
    with open_source(str(path), Settings()) as source:
        assert source.associated_names() == theirs.getAssociatedImagesList()
        assert source.associated_names() == ["label", "macro", "overview"]
        for name in source.associated_names():
            expected = np.asarray(theirs._getAssociatedImage(name))
            assert np.array_equal(source.associated_image(name), expected), name
        with pytest.raises(NotFound):
            source.associated_image("thumbnail")


@pytest.fixture
def vips_operation_cache() -> Iterator[None]:
    """libvips' operation cache on (its default), as in every process but a worker's
    (the Renderer turns it off): the CLI, the describe command, these tests."""
    saved = pyvips.cache_get_max()
    pyvips.cache_set_max(100)
    yield
    pyvips.cache_set_max(saved)


@pytest.mark.usefixtures("vips_operation_cache")
def test_an_associated_image_reads_again(frame_images: dict[str, Path]) -> None:
    """The SVS-like file's label (stripped LZW), macro (stripped JPEG) and thumbnail read
    twice from one source and again from a second one: the same pixels each time. (A
    page read with sequential access can be read once; the operation cache handed the
    consumed image to the next read: libvips' "out of order read".)"""
    path = frame_images["svs"]
    with open_source(str(path), Settings()) as first:
        assert isinstance(first, TiffSource)
        assert first.associated_names() == ["label", "macro", "thumbnail"]
        images = {name: first.associated_image(name) for name in first.associated_names()}
        for name, pixels in images.items():
            assert np.array_equal(first.associated_image(name), pixels), name
    with open_source(str(path), Settings()) as second:
        for name, pixels in images.items():
            assert np.array_equal(second.associated_image(name), pixels), name
