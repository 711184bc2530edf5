"""Composed images (workers/sources/composed.py): JSON/YAML descriptions in the shape of
large_image's ``multi`` source, over parts written by tests/images_composed.py.

Expected pixels are computed with numpy from the parts' own arrays; metadata and tiles are
compared with large_image's multi source (``large-image-source-multi``) on the same
description. Refusals are checked message by message: each names the bad entry, never a
path of the server's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import realslides
from tests.images_composed import (
    CHANNEL_SIZE,
    CHANNELS,
    FIELD_SIZE,
    channel_plane,
    channels_description,
    field_pixels,
    grey_pixels,
    make_parts,
    mosaic_description,
    write_description,
)
from tests.unit.conftest import register_source
from tilecast.common.errors import NotFound, UnsupportedFormat, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.engine import Renderer
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.composed import ComposedSource
from tilecast.workers.sources.composedspec import MAX_SOURCES
from tilecast.workers.sources.files import LocalFile
from tilecast.workers.sources.reader import Probe
from tilecast.workers.sources.registry import default_registry

large_image_source_multi = pytest.importorskip("large_image_source_multi")

MIN_PSNR = 30.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("composed")
    make_parts(root)
    return root


def describe(folder: Path, name: str, document: Any, *, as_yaml: bool = False) -> Path:
    suffix = ".yaml" if as_yaml else ".json"
    return write_description(folder / f"{name}{suffix}", document, as_yaml=as_yaml)


def open_image(path: Path, settings: Settings | None = None) -> ImageSource:
    """``path`` opened as the worker opens a registered file: by the reader registry."""
    file = LocalFile(str(path))
    try:
        return default_registry().open(file, settings or Settings())
    except BaseException:
        file.close()
        raise


def theirs(path: Path) -> Any:
    return large_image_source_multi.open(str(path), noCache=True)


def full_resolution(source: ImageSource, frame: int = 0) -> np.ndarray:
    """The whole composed image at full resolution, from its tiles."""
    z = source.levels - 1
    out = np.zeros((source.size_y, source.size_x, source.band_count), dtype=source.dtype)
    across, down = source.grid.tiles_at(z)
    for y in range(down):
        for x in range(across):
            w, h = source.tile_content(z, x, y, frame)
            tile = source.read_tile(z, x, y, frame).array()
            top, left = y * source.tile_height, x * source.tile_width
            out[top : top + h, left : left + w] = tile[:h, :w]
    return out


def assert_tiles_match_large_image(source: ImageSource, reference: Any, frames: list[int]) -> None:
    """Every tile of every native level of ``frames`` within 1 of large_image's."""
    for frame in frames:
        for z in range(source.levels):
            if not source.is_native_level(z, frame):
                continue
            across, down = source.grid.tiles_at(z)
            for y in range(down):
                for x in range(across):
                    w, h = source.tile_content(z, x, y, frame)
                    ours = source.read_tile(z, x, y, frame).array()[:h, :w]
                    want = reference.getTile(x, y, z, frame=frame, numpyAllowed="always")
                    want = want.reshape(*want.shape[:2], -1)[:h, :w]
                    assert ours.shape == want.shape, (frame, z, x, y)
                    diff = np.abs(ours.astype(int) - want.astype(int)).max()
                    assert diff <= 1, (frame, z, x, y, diff)


def psnr(ours: np.ndarray, expected: np.ndarray, top: float = 255.0) -> float:
    mse = float(np.mean((ours.astype(float) - expected.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(top**2 / mse)


def json_roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- recognising descriptions -------------------------------------------------------------------
def test_json_and_yaml_descriptions_are_recognised_by_content(folder: Path) -> None:
    for path in (
        describe(folder, "recognised", mosaic_description()),
        describe(folder, "recognised", mosaic_description(), as_yaml=True),
        # No telling extension: the content decides.
        write_description(folder / "recognised.txt", mosaic_description(), as_yaml=True),
    ):
        assert ComposedSource.can_read(Probe(LocalFile(str(path))))
        with open_image(path) as source:
            assert source.name == "composed"
    not_ours = folder / "settings.json"
    not_ours.write_text(json.dumps({"layers": [{"path": "left.tiff"}]}))
    assert not ComposedSource.can_read(Probe(LocalFile(str(not_ours))))
    assert not ComposedSource.can_read(Probe(LocalFile(str(folder / "left.tiff"))))


def test_json_or_yaml_whose_sources_is_no_list_goes_on_to_the_next_reader(folder: Path) -> None:
    path = folder / "geo.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "sources": "survey"}))
    assert ComposedSource.can_read(Probe(LocalFile(str(path))))
    with pytest.raises(UnsupportedFormat, match="composed image: JSON or YAML without"):
        open_image(path)


# -- frames ------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_yaml", [False, True], ids=["json", "yaml"])
def test_one_file_per_channel_is_one_image_with_channel_frames(folder: Path, as_yaml: bool) -> None:
    path = describe(folder, "channels", channels_description(), as_yaml=as_yaml)
    reference = theirs(path)
    with open_image(path) as source:
        meta = source.metadata
        assert json_roundtrip(meta) == json_roundtrip(reference.getMetadata())
        assert (meta["sizeX"], meta["sizeY"], meta["dtype"], meta["bandCount"]) == (
            *CHANNEL_SIZE, "uint16", 1,
        )  # fmt: skip
        assert meta["channels"] == list(CHANNELS)
        assert meta["channelmap"] == {name: c for c, name in enumerate(CHANNELS)}
        assert meta["IndexRange"] == {"IndexC": 3}
        assert [frame["Channel"] for frame in meta["frames"]] == list(CHANNELS)
        for c in range(3):
            assert np.array_equal(full_resolution(source, c), channel_plane(c))
        assert_tiles_match_large_image(source, reference, [0, 1, 2])


def test_channels_z_and_t_placements_are_large_images(folder: Path) -> None:
    """Two cycles of three channels: ``c`` and ``t`` given, a ``zSet`` override, an entry
    stacked after the others, and ``frames`` of a part chosen."""
    document = {
        "channels": ["DAPI", "CD3", "CD8"],
        "sources": [
            *({"path": f"ch{c}.tiff", "c": c, "t": 0} for c in range(3)),
            *({"path": f"ch{c}.tiff", "c": c, "t": 1, "zSet": 1} for c in range(3)),
            {"path": "grey.tiff", "channel": "nuclei"},
        ],
    }
    path = describe(folder, "cycles", document)
    reference = theirs(path)
    with open_image(path) as source:
        assert json_roundtrip(source.metadata) == json_roundtrip(reference.getMetadata())
        assert source.metadata["IndexRange"] == {"IndexC": 4, "IndexZ": 3, "IndexT": 2}
        assert source.channel_names == ["DAPI", "CD3", "CD8", "nuclei"]
        frame = next(  # channel 1 of the second cycle, at z 1
            f["Frame"] for f in source.metadata["frames"]
            if (f.get("IndexC"), f.get("IndexZ"), f.get("IndexT")) == (1, 1, 1)
        )  # fmt: skip
        assert np.array_equal(full_resolution(source, frame), channel_plane(1))
        assert_tiles_match_large_image(source, reference, [0, frame, source.frame_count - 1])


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "pages.tiff"},  # plain frames: the composed frames are numbers
        {"path": "pages.tiff", "framesAsAxes": {"t": 1}},
        {"path": "pages.tiff", "frames": [1], "c": 2},
        {"path": "pages.tiff", "tValues": [3, 5]},
    ],
    ids=["plain", "as-axes", "chosen", "values"],
)
def test_the_frames_of_a_multi_frame_part_are_placed_as_large_image_places_them(
    folder: Path, entry: dict[str, Any]
) -> None:
    document = {"sources": [{"path": "ch2.tiff"}, entry]}
    path = describe(folder, "pages", document)
    reference = theirs(path)
    with open_image(path) as source:
        assert json_roundtrip(source.metadata) == json_roundtrip(reference.getMetadata())
        last = source.frame_count - 1
        assert_tiles_match_large_image(source, reference, [0, last])


def test_a_description_may_be_a_part_of_another(folder: Path) -> None:
    describe(folder, "inner", channels_description())
    path = describe(folder, "outer", {"sources": [{"path": "inner.json"}]})
    with open_image(path) as source:
        assert source.frame_count == 3
        assert source.channel_names == list(CHANNELS)
        assert np.array_equal(full_resolution(source, 2), channel_plane(2))


# -- placement ----------------------------------------------------------------------------------
def test_two_fields_side_by_side(folder: Path) -> None:
    path = describe(folder, "mosaic", mosaic_description())
    reference = theirs(path)
    with open_image(path) as source:
        assert (source.size_x, source.size_y, source.frame_count) == (1200, 400, 1)
        expected = np.hstack([field_pixels("left"), field_pixels("right")])
        assert np.array_equal(full_resolution(source), expected)
        # Both parts store their levels: every composed level is read from them.
        assert all(source.is_native_level(z) for z in range(source.levels))
        assert json_roundtrip(source.metadata) == json_roundtrip(reference.getMetadata())
        assert_tiles_match_large_image(source, reference, [0])


def test_overlapping_parts_are_drawn_in_order_over_a_background(folder: Path) -> None:
    document = {
        "width": 900,
        "height": 500,
        "backgroundColor": [0, 0, 255],
        "sources": [
            {"path": "left.tiff", "position": {"x": 0, "y": 100}},
            {"path": "right.tiff", "z": 0, "position": {"x": 300, "y": 0}},
        ],
    }
    path = describe(folder, "overlap", document)
    expected = np.zeros((500, 900, 3), np.uint8)
    expected[:, :] = (0, 0, 255)
    expected[100:500, 0:600] = field_pixels("left")
    expected[0:400, 300:900] = field_pixels("right")
    with open_image(path) as source:
        assert np.array_equal(full_resolution(source), expected)
        assert_tiles_match_large_image(source, theirs(path), [0])


def test_a_part_scaled_up_is_repeated_pixel_for_pixel(folder: Path) -> None:
    document = {"sources": [{"path": "left.tiff", "position": {"x": 64, "scale": 2}}]}
    path = describe(folder, "doubled", document)
    doubled = np.repeat(np.repeat(field_pixels("left"), 2, axis=0), 2, axis=1)
    with open_image(path) as source:
        assert (source.size_x, source.size_y) == (1264, 800)
        image = full_resolution(source)
        assert np.array_equal(image[:, 64:], doubled)
        assert not image[:, :64].any()
        assert all(source.is_native_level(z) for z in range(source.levels))
        assert_tiles_match_large_image(source, theirs(path), [0])


def test_a_part_scaled_down_is_read_from_its_own_level(folder: Path) -> None:
    document = {"sources": [{"path": "left.tiff", "position": {"scale": 0.5}}]}
    path = describe(folder, "halved", document)
    with open_image(path) as source, open_image(folder / "left.tiff") as part:
        assert (source.size_x, source.size_y) == (300, 200)
        stored = full_resolution_of_level(part, part.levels - 2)
        assert np.array_equal(full_resolution(source), stored)
        assert_tiles_match_large_image(source, theirs(path), [0])


def full_resolution_of_level(source: ImageSource, z: int) -> np.ndarray:
    width, height = source.level_size(z)
    out = np.zeros((height, width, source.band_count), dtype=source.dtype)
    across, down = source.grid.tiles_at(z)
    for y in range(down):
        for x in range(across):
            w, h = source.tile_content(z, x, y)
            top, left = y * source.tile_height, x * source.tile_width
            out[top : top + h, left : left + w] = source.read_tile(z, x, y).array()[:h, :w]
    return out


def test_a_part_without_levels_scaled_down_is_halved_as_large_image_synthesizes(
    folder: Path,
) -> None:
    document = {"sources": [{"path": "flat.tiff", "position": {"scale": 0.25}}]}
    path = describe(folder, "quartered", document)
    reference = theirs(path)
    with open_image(path) as source:
        assert (source.size_x, source.size_y) == (150, 100)
        ours = full_resolution(source)
        want = reference.getTile(0, 0, 0, numpyAllowed="always")[:100, :150]
        assert psnr(ours, want) >= MIN_PSNR  # measured: 38 dB


def test_a_quarter_turn_moves_every_pixel_exactly(folder: Path) -> None:
    """s11 = 0, s12 = -1, s21 = 1, s22 = 0: part pixel (u, v) lands on (x - 1 - v, u),
    a pixel centre on a pixel centre (bicubic sampling there is the pixel itself)."""
    width, height = FIELD_SIZE
    document = {
        "sources": [
            {
                "path": "left.tiff",
                "position": {"x": height, "s11": 0, "s12": -1, "s21": 1, "s22": 0},
            }
        ]
    }
    path = describe(folder, "turned", document)
    with open_image(path) as source:
        assert (source.size_x, source.size_y) == (height, width)
        assert np.array_equal(full_resolution(source), np.rot90(field_pixels("left"), k=-1))


def test_a_rotated_part_matches_large_image_inside_its_edges(folder: Path) -> None:
    document = {
        "sources": [
            {"path": "right.tiff"},
            {
                "path": "left.tiff",
                "z": 0,
                "position": {
                    "x": 300,
                    "y": 10,
                    "s11": 0.866,
                    "s12": 0.5,
                    "s21": -0.5,
                    "s22": 0.866,
                },
            },
        ]
    }
    path = describe(folder, "rotated", document)
    reference = theirs(path)
    with open_image(path) as source:
        assert (source.size_x, source.size_y) == (reference.sizeX, reference.sizeY)
        ours = full_resolution(source)
        want = reference.getRegion(format="numpy")[0][:, :, :3]
        # Inside: away from the rotated part's edges, where bicubic kernels meet the
        # outside and large_image blends by its alpha.
        inside = rotated_interior(source.size_x, source.size_y, margin=3)
        assert psnr(ours[inside], want[inside]) >= MIN_PSNR
        outside = ~rotated_interior(source.size_x, source.size_y, margin=-3)
        outside[400:] = False  # below the right field: nothing drawn there
        assert np.array_equal(ours[outside], want[outside])


def test_the_tile_size_does_not_change_the_pixels(folder: Path) -> None:
    """Tiles of 1024 (drawn in strips of rows) hold what tiles of 256 hold, within the 1
    that libvips' quantised sample positions make of a block read at another corner."""
    position = {"x": 300, "y": 10, "s11": 0.866, "s12": 0.5, "s21": -0.5, "s22": 0.866}
    small = {"sources": [{"path": "left.tiff", "position": position}]}
    large = {"tileWidth": 1024, "tileHeight": 1024, **small}
    with (
        open_image(describe(folder, "tiles-256", small)) as ours,
        open_image(describe(folder, "tiles-1024", large)) as big,
    ):
        assert (big.tile_width, big.levels) == (1024, 1)
        diff = np.abs(full_resolution(ours).astype(int) - full_resolution(big).astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) < 20


def rotated_interior(width: int, height: int, margin: float) -> np.ndarray:
    """Pixels whose centres lie ``margin`` inside the rotated left field's edges."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    matrix = np.array([[0.866, 0.5], [-0.5, 0.866]])
    inverse = np.linalg.inv(matrix)
    u = inverse[0, 0] * (xs - 300) + inverse[0, 1] * (ys - 10)
    v = inverse[1, 0] * (xs - 300) + inverse[1, 1] * (ys - 10)
    fw, fh = FIELD_SIZE
    return (u >= margin) & (u < fw - margin) & (v >= margin) & (v < fh - margin)


def test_a_crop_keeps_a_rectangle_of_the_part(folder: Path) -> None:
    document = {
        "sources": [
            {
                "path": "left.tiff",
                "position": {
                    "x": 10, "y": 5, "crop": {"left": 100, "top": 50, "right": 300, "bottom": 250}
                },
            }
        ]
    }  # fmt: skip
    path = describe(folder, "cropped", document)
    with open_image(path) as source:
        assert (source.size_x, source.size_y) == (310, 255)
        image = full_resolution(source)
        assert np.array_equal(image[55:255, 110:310], field_pixels("left")[50:250, 100:300])
        image[55:255, 110:310] = 0
        assert not image.any()


# -- data types and bands ---------------------------------------------------------------------
def test_dtypes_are_promoted_and_values_kept(folder: Path) -> None:
    document = {"sources": [{"path": "grey.tiff", "c": 0}, {"path": "ch1.tiff", "c": 1}]}
    with open_image(describe(folder, "mixed", document)) as source:
        assert source.dtype == np.uint16 and source.band_count == 1
        assert np.array_equal(full_resolution(source, 0), grey_pixels().astype(np.uint16))
        assert np.array_equal(full_resolution(source, 1), channel_plane(1))


def test_a_named_dtype_scales_values_between_full_ranges(folder: Path) -> None:
    document = {"dtype": "uint16", "sources": [{"path": "grey.tiff"}]}
    path = describe(folder, "widened", document)
    with open_image(path) as source:
        assert source.metadata["dtype"] == "uint16"
        assert np.array_equal(full_resolution(source), grey_pixels().astype(np.uint16) * 257)
        assert_tiles_match_large_image(source, theirs(path), [0])


def test_grey_parts_beside_rgb_parts_are_repeated_into_rgb(folder: Path) -> None:
    document = {
        "sources": [{"path": "left.tiff"}, {"path": "grey.tiff", "z": 0, "position": {"x": 600}}]
    }
    with open_image(describe(folder, "grey-rgb", document)) as source:
        assert source.band_count == 3
        image = full_resolution(source)
        assert np.array_equal(image[:500, 600:], np.repeat(grey_pixels(), 3, axis=2))


def test_single_band_keeps_the_first_band(folder: Path) -> None:
    document = {"singleBand": True, "sources": [{"path": "left.tiff"}]}
    with open_image(describe(folder, "first-band", document)) as source:
        assert source.band_count == 1
        assert np.array_equal(full_resolution(source), field_pixels("left")[:, :, :1])


# -- levels -------------------------------------------------------------------------------------
def test_levels_the_parts_lack_are_synthesized_like_large_images(
    folder: Path, renderer: Renderer
) -> None:
    document = {
        "sources": [{"path": "flat.tiff"}, {"path": "left.tiff", "z": 0, "position": {"x": 600}}]
    }
    path = describe(folder, "half-flat", document)
    source_id = register_source(renderer, path)
    source = renderer.open(source_id, 1)
    assert [source.is_native_level(z) for z in range(source.levels)] == [False, False, False, True]
    tiles = renderer.raw_tiles(source, source_id, 1)
    reference = theirs(path)
    for z in range(source.levels - 1):
        across, down = source.grid.tiles_at(z)
        for y in range(down):
            for x in range(across):
                w, h = source.tile_content(z, x, y)
                got = tiles.get(z, x, y).array()[:h, :w]
                want = reference.getTile(x, y, z, numpyAllowed="always")[:h, :w]
                assert psnr(got, want) >= MIN_PSNR, (z, x, y)


# -- real files as parts -------------------------------------------------------------------------
def test_real_slides_are_parts(tmp_path: Path) -> None:
    """boxes.tiff (rounded levels) twice, overlapping: tiles as large_image's (its TIFF
    source reads it too; tilecast's TIFF reader serves the stored pixels, so large_image's
    ICC correction is off for the comparison)."""
    large_image = pytest.importorskip("large_image")
    boxes = real_slide("boxes.tiff")
    # An offset every level's scale divides: large_image places parts at lower levels by
    # floor divisions that shift a part by a pixel otherwise (see docs/READERS.md).
    document = {
        "sources": [{"path": str(boxes)}, {"path": str(boxes), "z": 0, "position": {"x": 40}}]
    }
    path = describe(tmp_path, "real", document)
    before = large_image.config.getConfig("icc_correction", True)
    large_image.config.setConfig("icc_correction", False)
    try:
        with open_image(path) as source:
            assert source.size_x == 40 + 300
            assert_tiles_match_large_image(source, theirs(path), [0])
    finally:
        large_image.config.setConfig("icc_correction", before)


def test_associated_images_are_the_parts(tmp_path: Path) -> None:
    """small.svs's associated images, under its names (large_image reads the slide with
    OpenSlide, in RGBA)."""
    svs = real_slide("small.svs")
    document = {"sources": [{"path": str(svs)}, {"path": str(svs), "z": 0, "position": {"x": 64}}]}
    path = describe(tmp_path, "slides", document)
    reference = theirs(path)
    with open_image(path) as source:
        assert source.associated_names() == reference.getAssociatedImagesList() != []
        for name in source.associated_names():
            want, _ = reference.getAssociatedImage(name, format="numpy")
            assert np.array_equal(source.associated_image(name), want[:, :, :3])
        with pytest.raises(NotFound):
            source.associated_image("overview")


def real_slide(name: str) -> Path:
    try:
        return realslides.path(name)
    except realslides.Unavailable as exc:
        pytest.fail(f"the real sample slides cannot be fetched: {exc}")


# -- bounds and refusals ---------------------------------------------------------------------
BAD_DESCRIPTIONS: list[tuple[str, Any, str]] = [
    ("scale",
     {"sources": [{"path": "left.tiff"}, {"path": "right.tiff", "position": {"scale": 0}}]},
     r"^composed image: sources\[1\]\.position\.scale must be > 0$"),
    ("path-type", {"sources": [{"path": "left.tiff"}, {"path": 3}]},
     r"sources\[1\]\.path must be a non-empty string"),
    ("missing", {"sources": [{"path": "left.tiff"}, {"path": "nothere.tiff"}]},
     r"sources\[1\]\.path is neither a file nor a directory"),
    ("empty", {"sources": []}, r"sources is empty"),
    ("top-key", {"colour": "red", "sources": [{"path": "left.tiff"}]},
     r"unknown key 'colour' at the top level"),
    ("position-key", {"sources": [{"path": "left.tiff", "position": {"angle": 30}}]},
     r"unknown key 'angle' in sources\[0\]\.position"),
    ("negative-z", {"sources": [{"path": "left.tiff", "z": -1}]}, r"sources\[0\]\.z must be >= 0"),
    ("bool-c", {"sources": [{"path": "left.tiff", "c": True}]},
     r"sources\[0\]\.c must be an integer"),
    ("values", {"sources": [{"path": "left.tiff", "zValues": [0.5]}]},
     r"sources\[0\]: zValues place its frame 0 at z = 0\.5"),
    ("singular", {"sources": [{"path": "left.tiff", "position": {"s11": 0, "s22": 0}}]},
     r"sources\[0\]\.position is not invertible"),
    ("infinite", {"sources": [{"path": "left.tiff", "position": {"x": float("inf")}}]},
     r"sources\[0\]\.position\.x must be a finite number"),
    ("warp", {"sources": [{"path": "left.tiff", "position": {"warp": {"src": [], "dst": []}}}]},
     r"sources\[0\]\.position\.warp is not supported"),
    ("pattern", {"sources": [{"path": ".", "pathPattern": "ch.*"}]},
     r"sources\[0\]\.pathPattern is not supported"),
    ("style", {"sources": [{"path": "left.tiff", "style": {"band": 1}}]},
     r"sources\[0\]\.style is not supported"),
    ("background", {"backgroundColor": [0, 0, 0, 0], "sources": [{"path": "left.tiff"}]},
     r"backgroundColor has 4 values; the image has 3 bands"),
    ("dtype", {"dtype": "complex64", "sources": [{"path": "left.tiff"}]}, r"dtype must be one of"),
    ("channels", {"sources": [{"path": "left.tiff", "channels": []}]},
     r"sources\[0\]\.channels must not be empty"),
    ("strides", {"sources": [{"path": "ch0.tiff", "framesAsAxes": {"c": 4}}]},
     r"sources\[0\]\.framesAsAxes\.c: a stride of 4 is more than the frames the part has"),
    ("not-an-image", {"sources": [{"path": "left.tiff"}, {"path": "notes.txt"}]},
     r"sources\[1\]: unsupported format: the file is text"),
    ("self", {"sources": [{"path": "self.json"}]},
     r"sources\[0\]\.path is this description itself: a cycle"),
    ("no-frames", {"sources": [{"path": "left.tiff", "frames": [3]}]},
     r"no frame of any source is used"),
    ("too-many", {"sources": [{"path": "left.tiff"}] * (MAX_SOURCES + 1)},
     rf"sources has {MAX_SOURCES + 1} entries; at most {MAX_SOURCES} are composed"),
    ("too-large", {"width": 10**6, "height": 10**6, "sources": [{"path": "left.tiff"}]},
     r"the composed image is 1000000 x 1000000 pixels, more than the \d+ this server decodes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "message"),
    [case[1:] for case in BAD_DESCRIPTIONS],
    ids=[case[0] for case in BAD_DESCRIPTIONS],
)
def test_a_bad_description_is_refused_naming_the_entry(
    folder: Path, tmp_path: Path, document: Any, message: str
) -> None:
    (folder / "notes.txt").write_text("not an image\n")
    path = describe(folder, "self", document)
    with pytest.raises(UnsupportedImage) as caught:
        open_image(path, Settings(max_decode_pixels=10**10))
    assert caught.value.status == 422
    assert caught.value.message.startswith("composed image: ")
    assert caught.value.parameter is None
    assert str(folder) not in caught.value.message
    assert __import__("re").search(message, caught.value.message), caught.value.message


def alias_bomb() -> bytes:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for before, name in zip("abcde", "bcdef", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{before}'] * 10)}]")
    lines += ["sources:", "  - path: left.tiff", "    extra: [*f, *f, *f]"]
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"sources:\n  - path: [left.tiff\n", r"neither JSON nor YAML: .* at line 3, column 1"),
        (b'{"sources": [{"path": "left.tiff"}\n', r"neither JSON nor YAML"),
        (b"sources:\n  - path: left.tiff\n\xff\n", r"not UTF-8 text"),
        # A few lines of aliases stand for 10**6 values: refused before anything walks them.
        (alias_bomb(), r"holds more than 200000 values"),
    ],
    ids=["yaml", "json", "utf8", "aliases"],
)  # fmt: skip
def test_a_description_that_does_not_parse_is_refused(
    folder: Path, text: bytes, message: str
) -> None:
    path = folder / "broken.yaml"
    path.write_bytes(text)
    with pytest.raises(UnsupportedImage, match=message):
        open_image(path)


def test_a_part_shrunk_past_its_stored_levels_is_refused(tmp_path: Path) -> None:
    """Composing one tile would read more than MAX_REGION_SIDE pixels across the part."""
    from tests.images_composed import write_part

    write_part(tmp_path / "wide.tiff", np.zeros((5000, 5000, 1), np.uint8), pyramid=False)
    document = {"sources": [{"path": "wide.tiff", "position": {"scale": 0.01}}]}
    with pytest.raises(UnsupportedImage) as caught:
        open_image(describe(tmp_path, "shrunk", document))
    assert caught.value.message.startswith(
        "composed image: sources[0]: the part is shrunk 100 times and stores no level near "
        "that scale"
    )
    # Its own levels allow it: a pyramid part.
    write_part(tmp_path / "wide.tiff", np.zeros((5000, 5000, 1), np.uint8), pyramid=True)
    with open_image(describe(tmp_path, "shrunk", document)) as source:
        assert (source.size_x, source.size_y) == (50, 50)


def test_a_description_over_a_megabyte_is_refused(folder: Path) -> None:
    path = folder / "huge.json"
    entries = [{"path": "left.tiff", "name": "x" * 2000}] * 600
    path.write_text(json.dumps({"sources": entries}))
    with pytest.raises(UnsupportedImage, match=r"bytes; at most 1048576 are read"):
        open_image(path)


def test_a_cycle_through_another_description_is_refused(folder: Path) -> None:
    describe(folder, "ping", {"sources": [{"path": "pong.json"}]})
    path = describe(folder, "pong", {"sources": [{"path": "ping.json"}]})
    with pytest.raises(UnsupportedImage, match=r"a description above it: a cycle"):
        open_image(path)


def test_parts_outside_the_source_roots_are_refused(folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.tiff"
    outside.write_bytes((folder / "left.tiff").read_bytes())
    (root / "inside.tiff").write_bytes((folder / "left.tiff").read_bytes())
    os.symlink(outside, root / "link.tiff")
    settings = Settings(source_roots=(str(root),))
    for name in (str(outside), "../outside.tiff", "link.tiff"):
        path = describe(root, "escape", {"sources": [{"path": "inside.tiff"}, {"path": name}]})
        with pytest.raises(UnsupportedImage) as caught:
            open_image(path, settings)
        assert caught.value.message == (
            "composed image: sources[1].path is outside the configured source roots"
        )
    # basePath may not lead out either.
    path = describe(root, "based", {"basePath": "..", "sources": [{"path": "outside.tiff"}]})
    with pytest.raises(UnsupportedImage, match=r"sources\[0\]\.path is outside"):
        open_image(path, settings)
    path = describe(root, "fine", {"sources": [{"path": "inside.tiff"}]})
    with open_image(path, settings) as source:
        assert (source.size_x, source.size_y) == FIELD_SIZE


def test_a_part_that_is_no_regular_file_is_refused_without_opening_it(tmp_path: Path) -> None:
    """A FIFO would block the worker in open(2) until a writer came."""
    os.mkfifo(tmp_path / "pipe.tiff")
    path = describe(tmp_path, "pipe", {"sources": [{"path": "pipe.tiff"}]})
    for settings in (Settings(), Settings(source_roots=(str(tmp_path),))):
        with pytest.raises(UnsupportedImage, match=r"sources\[0\]\.path is neither a file nor"):
            open_image(path, settings)


def test_a_damaged_part_is_named_when_its_tile_is_read(folder: Path, tmp_path: Path) -> None:
    """A part's tile that does not decode: a 422 naming the entry and the part's format."""
    from tests.images import damaged_copy
    from tilecast.sample import sample_image, write_tiff

    # JPEG tiles of noise fail to decode (libvips' deflate decoder passes noise on).
    jpeg = write_tiff(sample_image(*FIELD_SIZE), tmp_path / "jpeg.tiff", pyramid=False)
    damaged_copy(jpeg, tmp_path / "right.tiff")
    (tmp_path / "left.tiff").write_bytes((folder / "left.tiff").read_bytes())
    with open_image(describe(tmp_path, "damaged", mosaic_description())) as source:
        z = source.levels - 1
        source.read_tile(z, 0, 0)  # the left part is whole
        with pytest.raises(UnsupportedImage) as caught:
            source.read_tile(z, 3, 0)
    assert caught.value.message.startswith("sources[1]: TIFF: ")
    assert str(tmp_path) not in caught.value.message


def test_a_description_read_without_a_local_path_is_refused(folder: Path) -> None:
    from tilecast.workers.sources.files import ImageFile

    class Remote(ImageFile):
        def __init__(self, data: bytes) -> None:
            super().__init__()
            self.name, self._data, self.size = "remote", data, len(data)

        def read(self, offset: int, count: int) -> bytes:
            return self._data[offset : offset + count]

    data = json.dumps(mosaic_description()).encode()
    with pytest.raises(UnsupportedImage, match="the description must be a local file"):
        default_registry().open(Remote(data), Settings())


# -- memory, threads, closing ----------------------------------------------------------------------
def test_parts_are_counted_and_closed_with_the_image(folder: Path) -> None:
    source = open_image(describe(folder, "counted", channels_description()))
    assert isinstance(source, ComposedSource)
    parts = list(source._parts.values())
    assert len(parts) == 3
    assert source.estimated_bytes >= sum(part.estimated_bytes for part in parts)
    source.close()
    assert all(part.file._fd < 0 for part in parts)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="closed"):
        source.read_tile(0, 0, 0)
    source.close()  # idempotent


def test_concurrent_reads_agree(folder: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with open_image(describe(folder, "threads", mosaic_description())) as source:
        z = source.levels - 1
        across, down = source.grid.tiles_at(z)
        coords = [(x, y) for y in range(down) for x in range(across)] * 4
        expected = {xy: source.read_tile(z, *xy).array() for xy in coords}
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda xy: source.read_tile(z, *xy).array(), coords))
        assert all(np.array_equal(g, expected[xy]) for g, xy in zip(got, coords, strict=True))
