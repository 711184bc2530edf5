"""The OME-Zarr view's layout and documents (api/protocols/zarrlayout.py, zarr.py): axes
from frames, shapes and chunks per dataset, chunk keys to tiles, NGFF 0.4 metadata
validated by ome-zarr-models; signed grants of an item covering it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from ome_zarr_models.v04.image import ImageAttrs

from tilecast.api.protocols import zarr
from tilecast.api.protocols.zarrlayout import ZarrLayout, frame_layout
from tilecast.common import signing
from tilecast.common.errors import NotFound, UnsupportedImage

BASE = {
    "levels": 4,
    "sizeX": 2000,
    "sizeY": 1000,
    "tileWidth": 256,
    "tileHeight": 256,
    "mm_x": 0.00025,
    "mm_y": 0.0005,
    "dtype": "uint8",
    "bandCount": 3,
}


def frames_of(**axes: int) -> list[dict[str, Any]]:
    """Frames over ``axes`` (IndexC=3, ...) in large_image's order: the first axis named
    varies fastest."""
    names = list(axes)
    out = []
    for values in itertools.product(*(range(axes[n]) for n in reversed(names))):
        out.append(dict(zip(reversed(names), values, strict=True)))
    return out


def with_frames(meta: dict[str, Any], frames: list[dict[str, Any]], **extra: Any) -> dict:
    ranges = {
        key: max(f.get(key, 0) for f in frames) + 1
        for key in {k for f in frames for k in f}
        if max(f.get(key, 0) for f in frames) > 0
    }
    indexed = []
    index = -1
    for number, frame in enumerate(frames):
        if number == 0 or any(
            frame.get(k) != frames[number - 1].get(k) for k in frame if k != "IndexC"
        ):
            index += 1
        indexed.append({**frame, "Frame": number, "Index": index})
    return {**meta, "frames": indexed, "IndexRange": ranges, **extra}


def test_a_single_frame_rgb_image() -> None:
    layout = ZarrLayout.from_metadata(BASE)
    assert layout.axis_names == ("c", "y", "x")
    assert [layout.shape(d) for d in range(4)] == [
        [3, 1000, 2000],
        [3, 500, 1000],
        [3, 250, 500],
        [3, 125, 250],
    ]
    assert layout.chunks() == [3, 256, 256]
    place = layout.locate(0, ["0", "3", "7"])  # dataset 0 is tilecast's top level
    assert (place.frame, place.z, place.x, place.y) == (0, 3, 7, 3)


def test_channels_z_and_t_in_ngff_order() -> None:
    meta = with_frames(
        {**BASE, "bandCount": 1, "dtype": "uint16"}, frames_of(IndexC=3, IndexZ=2, IndexT=4)
    )
    layout = ZarrLayout.from_metadata(meta)
    assert layout.axis_names == ("t", "c", "z", "y", "x")
    assert layout.shape(0) == [4, 3, 2, 1000, 2000]
    assert layout.chunks() == [1, 1, 1, 256, 256]
    for frame in meta["frames"]:
        key = [str(frame["IndexT"]), str(frame["IndexC"]), str(frame["IndexZ"]), "0", "0"]
        assert layout.locate(1, key).frame == frame["Frame"]


def test_multi_band_channels_hold_their_bands() -> None:
    layout = ZarrLayout.from_metadata(with_frames(BASE, frames_of(IndexC=2)))
    assert layout.axis_names == ("c", "y", "x")
    assert layout.shape(0)[0] == 6 and layout.chunks()[0] == 3
    assert layout.locate(0, ["1", "0", "0"]).frame == 1


def test_a_z_stack_alone_still_has_c() -> None:
    axes, frames = frame_layout(frames_of(IndexZ=5), {"IndexZ": 5})
    assert axes == (("c", 1), ("z", 5))
    assert frames[(0, 3)] == 3


def test_other_axes_go_along_t_in_index_order() -> None:
    meta = with_frames({**BASE, "bandCount": 1}, frames_of(IndexC=2, IndexXY=3))
    layout = ZarrLayout.from_metadata(meta)
    assert layout.frame_axes == (("t", 3), ("c", 2))
    assert layout.locate(0, ["2", "1", "0", "0"]).frame == 5
    # Plain numbered pages (no axes at all): one per t.
    pages = with_frames(BASE, [{} for _ in range(4)])
    assert ZarrLayout.from_metadata(pages).frame_axes == (("t", 4), ("c", 1))
    # Frames that fill no grid: one per t, whatever their indices say.
    ragged = [{"IndexC": 0}, {"IndexC": 1}, {"IndexC": 0, "IndexXY": 1}]
    axes, frames = frame_layout(ragged, {"IndexC": 2, "IndexXY": 2})
    assert axes == (("t", 3), ("c", 1)) and frames[(2, 0)] == 2
    # Indices that are no grid's (negative, not numbers): one frame per t as well.
    for odd in ([{"IndexC": -1}, {"IndexC": 0}, {"IndexC": 1}], [{"IndexC": "a"}, {}]):
        assert frame_layout(odd, {"IndexC": 2})[0] == (("t", len(odd)), ("c", 1))


@pytest.mark.parametrize(
    "key",
    [
        ["0", "0"],
        ["0", "0", "0", "0"],
        ["1", "0", "0"],  # c has one chunk
        ["0", "4", "0"],  # 1000 / 256 -> rows 0-3
        ["0", "0", "8"],
        ["0", "0", "+1"],
        ["0", "0", "x"],
        ["0", "0", "1" * 12],
    ],
)
def test_keys_outside_the_array_are_not_found(key: list[str]) -> None:
    with pytest.raises(NotFound):
        ZarrLayout.from_metadata(BASE).locate(0, key)


def test_datasets_and_dtypes() -> None:
    layout = ZarrLayout.from_metadata(BASE)
    assert [layout.dataset_of(n) for n in ("0", "3", "4", "00x", "-1")] == [0, 3, None, None, None]
    with pytest.raises(UnsupportedImage):
        ZarrLayout.from_metadata({**BASE, "dtype": "complex64"})
    assert zarr.zarray(ZarrLayout.from_metadata({**BASE, "dtype": "float32"}), 0)["dtype"] == "<f4"


def test_documents_are_ngff_04() -> None:
    meta = with_frames(
        {**BASE, "bandCount": 1, "dtype": "uint16"},
        frames_of(IndexC=3, IndexZ=2),
        channels=["DAPI", "GFP", "TRITC"],
    )
    layout = ZarrLayout.from_metadata(meta)
    attrs = zarr.zattrs(layout, "slide.ome.tiff")
    ImageAttrs.model_validate(attrs)  # raises on anything NGFF 0.4 refuses
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "z", "y", "x"]
    assert multiscale["axes"][-1] == {"name": "x", "type": "space", "unit": "micrometer"}
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales[0] == [1.0, 1.0, 0.5, 0.25] and scales[3] == [1.0, 1.0, 4.0, 2.0]
    channels = attrs["omero"]["channels"]
    assert [c["label"] for c in channels] == ["DAPI", "GFP", "TRITC"]
    assert channels[0]["window"] == {"min": 0, "max": 65535, "start": 0, "end": 65535}
    array = zarr.zarray(layout, 2)
    assert array["shape"] == [3, 2, 250, 500] and array["chunks"] == [1, 1, 256, 256]
    assert array["compressor"] == {"id": "zlib", "level": 1}
    assert array["dimension_separator"] == "/" and array["fill_value"] == 0
    consolidated = zarr.zmetadata(layout, "x")["metadata"]
    assert consolidated["3/.zarray"] == zarr.zarray(layout, 3)


def test_rgba_and_images_without_pixel_size() -> None:
    layout = ZarrLayout.from_metadata({**BASE, "bandCount": 4, "mm_x": None, "mm_y": None})
    attrs = zarr.zattrs(layout, "a.png")
    ImageAttrs.model_validate(attrs)
    assert "unit" not in attrs["multiscales"][0]["axes"][-1]
    assert attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] == [
        1.0,
        2.0,
        2.0,
    ]
    channels = attrs["omero"]["channels"]
    assert [(c["label"], c["active"]) for c in channels][-1] == ("alpha", False)
    gray = zarr.zattrs(ZarrLayout.from_metadata({**BASE, "bandCount": 1}), "g")
    assert gray["omero"]["rdefs"]["model"] == "greyscale"


def test_grants_of_an_item_cover_its_view() -> None:
    assert signing.scope_path("/zarr/ab/0/.zarray", "ab", False) == "/item/ab/zarr/0/.zarray"
    assert signing.public_path("/item/ab/zarr/") == "/zarr/ab/"
