"""The OME-Zarr view (``/zarr/{id}/``, docs/EXPORTS.md) opened over real HTTP by the
readers people use: zarr-python 3 through fsspec's HTTPFileSystem, ome-zarr-py's reader,
and validated with ome-zarr-models (NGFF 0.4).

Every dataset of every view is read whole and compared with tilecast's own region
answers (the same raw tiles: equal) and with large_image's ``getRegion`` of the same
level and frame (within 1 at every native level; a level tilecast synthesizes is
filtered otherwise than large_image does, see tests/integration/test_parity_frames.py,
and is held to that file's PSNR bound), for an 8-bit RGB pyramidal TIFF, a 16-bit
OME-TIFF of 3 channels x 2 z x 2 t, a multi-page RGB file (frames along t) and a
16-bit OME-Zarr store (compared with the arrays it was written with).
"""

from __future__ import annotations

import io
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04
from ome_zarr_models.v04.image import Image as NgffImage
from PIL import Image
from zarr.storage import FsspecStore

from tests import largeimage_reference
from tests.conftest import ApiServer
from tests.images_omezarr import make_omezarr_images
from tests.integration.test_error_bodies import assert_clean_error
from tilecast.common import signing

pytestmark = pytest.mark.integration
large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)

# A level tilecast synthesizes (halving the level above, once per level, with libvips:
# workers/synthesis.py) is compared with regions that large_image -- and tilecast's own
# region endpoint, which follows it -- resize from the nearest stored level in one step
# (PIL's LANCZOS). Measured on the multi-page file: at most 1 two levels below the stored
# one, 2 three levels below; 54-55 dB.
SYNTHESIZED_BOUND = 2
SYNTHESIZED_PSNR = 50.0


@pytest.fixture(autouse=True)
def large_image_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    largeimage_reference.pin(monkeypatch)


@pytest.fixture(scope="module")
def omezarr_store(source_root: Path) -> Path:
    return make_omezarr_images(source_root / "zarr-export")["ngff04_czyx"]


def open_view(
    api: ApiServer, source_id: str, *, root: str = "", version: int | None = None
) -> zarr.Group:
    """The view as a zarr reader opens it: an fsspec HTTP store at ``/zarr/{id}/`` (under
    ``root``: a signed path; ``version``: pinned to that generation)."""
    pinned = "" if version is None else f"v{version}/"
    # No keep-alive: fsspec keeps its sessions for the process, and an idle connection
    # would hold an api started for one test past its stop.
    options = {"client_kwargs": {"headers": {"Connection": "close"}}}
    store = FsspecStore.from_url(
        api.url(f"{root}/zarr/{source_id}/{pinned}"), read_only=True, storage_options=options
    )
    return zarr.open_group(store, mode="r", zarr_format=2)


def validated(group: zarr.Group) -> NgffImage:
    """The view as ome-zarr-models reads it: NGFF 0.4 metadata and arrays, validated."""
    return NgffImage.from_zarr(group)


def level_area(meta: dict[str, Any], dataset: int) -> tuple[int, int]:
    """Width and height, in ``dataset``'s pixels, of its pixels made of whole
    full-resolution pixels: a level's last column or row may hold a part of one, which a
    region (tilecast's, large_image's) of the whole image would resample."""
    return meta["sizeX"] // 2**dataset, meta["sizeY"] // 2**dataset


def region(
    api: ApiServer, source_id: str, meta: dict[str, Any], dataset: int, frame: int
) -> np.ndarray:
    """tilecast's own region answer of :func:`level_area` at ``dataset``'s scale, in the
    image's dtype where its encodings keep it (TIFF: single-band uint16; else 8 bits)."""
    width, height = level_area(meta, dataset)
    encoding = "TIFF" if meta["dtype"] == "uint16" and meta["bandCount"] == 1 else "PNG"
    response = api.get(
        f"/item/{source_id}/tiles/region?right={width * 2**dataset}&bottom={height * 2**dataset}"
        f"&width={width}&height={height}&frame={frame}&encoding={encoding}"
    )
    assert response.status_code == 200, response.text
    if encoding == "TIFF":
        array = tifffile.imread(io.BytesIO(response.content))
    else:
        with Image.open(io.BytesIO(response.content)) as image:
            array = np.asarray(image)
    array = array if array.ndim == 3 else array[:, :, np.newaxis]
    assert array.shape[:2] == (height, width)
    return array


def reference(path: Path, meta: dict[str, Any], dataset: int, frame: int) -> np.ndarray:
    """large_image's ``getRegion`` of :func:`level_area` at ``dataset``'s scale."""
    source = large_image.open(str(path))
    width, height = level_area(meta, dataset)
    array, _ = source.getRegion(
        region={"left": 0, "top": 0, "right": width * 2**dataset, "bottom": height * 2**dataset},
        output={"maxWidth": width, "maxHeight": height},
        format=large_image.constants.TILE_FORMAT_NUMPY,
        frame=frame,
    )
    return array[:, :, : meta["bandCount"]]


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(peak**2 / mse)


def planes_of(group: zarr.Group, dataset: int, axes: list[str], meta: dict[str, Any]):
    """(frame, (height, width, bands) pixels) of every frame in dataset ``dataset``."""
    data = group[str(dataset)][...]
    bands = meta["bandCount"]
    frames = meta.get("frames") or [{}]
    for number, frame in enumerate(frames):
        index: list[Any] = []
        for axis in axes[:-2]:
            if axis == "c":
                c = int(frame.get("IndexC", 0)) if "IndexC" in (meta.get("IndexRange") or {}) else 0
                index.append(slice(c * bands, (c + 1) * bands))
            elif axis == "t":
                index.append(int(frame.get("IndexT", frame.get("Index", 0))))
            else:
                index.append(int(frame.get("IndexZ", 0)))
        yield number, np.moveaxis(data[tuple(index)], 0, -1)


def check_view(api: ApiServer, source_id: str, path: Path, native: set[int] | None) -> None:
    """Every dataset and frame of the view against tilecast's regions and large_image
    (``native``: the datasets the file stores, held to 1; None: no large_image side)."""
    meta = api.get(f"/item/{source_id}/tiles").json()
    group = open_view(api, source_id)
    image = validated(group)
    axes = [axis.name for axis in image.attributes.multiscales[0].axes]
    peak = 65535.0 if meta["dtype"] == "uint16" else 255.0
    for dataset in range(meta["levels"]):
        width, height = level_area(meta, dataset)
        for frame, whole in planes_of(group, dataset, axes, meta):
            plane = whole[:height, :width]
            ours = region(api, source_id, meta, dataset, frame)
            if ours.dtype == plane.dtype:  # else an 8-bit rendering: no comparison
                bound = 0 if native is None or dataset in native else SYNTHESIZED_BOUND
                assert difference(plane, ours[:, :, : plane.shape[2]]) <= bound, (dataset, frame)
            if native is None:
                continue
            theirs = reference(path, meta, dataset, frame)
            assert theirs.shape == plane.shape, (dataset, frame)
            if dataset in native:
                assert difference(plane, theirs) <= 1, (dataset, frame)
            else:
                assert difference(plane, theirs) <= SYNTHESIZED_BOUND, (dataset, frame)
                assert psnr(plane, theirs, peak) >= SYNTHESIZED_PSNR, (dataset, frame)


def difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


# --- the files -------------------------------------------------------------------------


def test_rgb_pyramid(api: ApiServer, images: dict[str, Path]) -> None:
    source_id = api.register(images["pyramid"])
    check_view(api, source_id, images["pyramid"], native={0, 1, 2, 3, 4})
    attrs = open_view(api, source_id).attrs.asdict()
    axes = attrs["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["c", "y", "x"]
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["red", "green", "blue"]


def test_ome_tiff_channels_z_t(api: ApiServer, frame_images: dict[str, Path]) -> None:
    source_id = api.register(frame_images["ome"])
    check_view(api, source_id, frame_images["ome"], native={0, 1})
    group = open_view(api, source_id)
    assert group["0"].shape == (2, 3, 2, 400, 520)
    assert group["0"].dtype == np.uint16
    attrs = group.attrs.asdict()
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["DAPI", "GFP", "TRITC"]


def test_multipage_frames_along_t(api: ApiServer, frame_images: dict[str, Path]) -> None:
    source_id = api.register(frame_images["multipage"])
    check_view(api, source_id, frame_images["multipage"], native={0})
    assert open_view(api, source_id)["0"].shape == (3, 3, 450, 600)


def test_omezarr_store(api: ApiServer, omezarr_store: Path) -> None:
    source_id = api.register(omezarr_store)
    check_view(api, source_id, omezarr_store, native=None)
    written = zarr.open_group(str(omezarr_store), mode="r")
    view = open_view(api, source_id)
    for dataset in range(3):
        np.testing.assert_array_equal(view[str(dataset)][...], written[f"s{dataset}"][...])


def test_ome_zarr_py_reads_the_view(api: ApiServer, frame_images: dict[str, Path]) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    source_id = api.register(frame_images["ome"])
    location = parse_url(api.url(f"/zarr/{source_id}/"), fmt=FormatV04())
    assert location is not None
    nodes = list(Reader(location)())
    image = nodes[0]
    assert image.load(Multiscales) is not None
    view = open_view(api, source_id)
    assert [level.shape for level in image.data] == [view[str(d)].shape for d in range(3)]
    for dataset, level in enumerate(image.data):
        np.testing.assert_array_equal(np.asarray(level), view[str(dataset)][...])
    channels = image.metadata["channel_names"]
    assert channels == ["DAPI", "GFP", "TRITC"]


# --- HTTP: keys, errors, caching, versions, access ------------------------------------


def test_keys_that_name_nothing_are_404_json(api: ApiServer, images: dict[str, Path]) -> None:
    source_id = api.register(images["pyramid"])  # c, y, x; 5 datasets, 12 x 8 chunks at 0
    missing = [
        "zarr.json",  # zarr v3 readers look for it first
        ".zarray",
        "0/.zgroup",
        "5/.zarray",
        "5/0/0/0",
        "0/1/0/0",  # c has one chunk (all three bands)
        "0/0/8/0",
        "0/0/0/12",
        "0/0/0",
        "0/0/0/0/0",
        "0/0/x/0",
        "0/0/-1/0",
        "labels/.zgroup",
    ]
    for key in missing:
        response = api.get(f"/zarr/{source_id}/{key}")
        assert_clean_error(response, 404)
    assert_clean_error(api.get("/zarr/nosuchitem/.zattrs"), 404)
    # Every chunk inside the array is there (zarr readers take a 404 for fill_value).
    for x in range(12):
        for y in range(8):
            assert api.get(f"/zarr/{source_id}/0/0/{y}/{x}").status_code == 200


def test_chunks_are_cached_tiles_with_http_caching(api: ApiServer, images: dict[str, Path]) -> None:
    source_id = api.register(images["deflate"])
    url = f"/zarr/{source_id}/1/0/1/1"
    first = api.get(url, headers={"Origin": "https://viewer.example"})
    second = api.get(url)
    assert first.status_code == second.status_code == 200
    assert first.headers["Content-Type"] == "application/octet-stream"
    assert (first.headers["X-Tilecast-Cache"], second.headers["X-Tilecast-Cache"]) == (
        "miss",
        "hit",
    )
    assert first.content == second.content and first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    assert api.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    array = zarr.open_group(
        FsspecStore.from_url(api.url(f"/zarr/{source_id}/"), read_only=True), mode="r"
    )["1"]
    assert (array.chunks, array.dtype) == ((3, 256, 256), np.uint8)
    chunk = np.frombuffer(zlib.decompress(first.content), np.uint8).reshape(3, 256, 256)
    np.testing.assert_array_equal(chunk[:, :94, :244], array[:, 256:350, 256:500])
    assert not chunk[:, 94:, :].any() and not chunk[:, :, 244:].any()  # padded with zeros
    document = api.get(f"/zarr/{source_id}/.zattrs")
    assert document.headers["Cache-Control"].endswith("no-cache")
    assert (
        api.get(
            f"/zarr/{source_id}/.zattrs", headers={"If-None-Match": document.headers["ETag"]}
        ).status_code
        == 304
    )


def test_a_changed_file_is_a_new_version(api: ApiServer, source_root: Path) -> None:
    path = source_root / "zarr-export-changing.tiff"
    tifffile.imwrite(path, np.full((300, 400), 10, np.uint8), tile=(256, 256))
    source_id = api.register(path)
    first = api.get(f"/zarr/{source_id}/.zattrs")
    generation = int(first.headers["X-Tilecast-Generation"])
    pinned = open_view(api, source_id, version=generation)
    assert pinned["0"].shape == (1, 300, 400) and int(pinned["0"][0, 0, 0]) == 10
    chunk = api.get(f"/zarr/{source_id}/v{generation}/0/0/0/0")
    assert chunk.headers["Cache-Control"].endswith("max-age=31536000, immutable")

    staged = path.with_suffix(".new")
    tifffile.imwrite(staged, np.full((200, 500), 200, np.uint8), tile=(256, 256))
    os.replace(staged, path)
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=90)
    assert response.status_code == 200 and response.json()["refreshed"] is True
    newer = int(response.json()["generation"])
    deadline = time.monotonic() + 10
    while api.get(f"/zarr/{source_id}/.zattrs").headers["X-Tilecast-Generation"] != str(newer):
        assert time.monotonic() < deadline, "the api never saw the new generation"
        time.sleep(0.2)
    # One api process saw it; the others' generation memos (TILECAST_GENERATION_TTL, 1 s)
    # may still name the old one for a moment: a chunk asked of them is the old file's.
    time.sleep(1.5)
    view = open_view(api, source_id)
    assert view["0"].shape == (1, 200, 500) and int(view["0"][0, 199, 499]) == 200
    for key in (".zattrs", "0/.zarray", "0/0/0/0"):
        body = assert_clean_error(api.get(f"/zarr/{source_id}/v{generation}/{key}"), 410)
        assert body["error"] == "version_gone"
    assert open_view(api, source_id, version=newer)["0"].shape == (1, 200, 500)


def test_signed_grants_cover_the_view(
    start_api: Callable[[Mapping[str, str]], ApiServer],
    tilecast_env: dict[str, str],
    api: ApiServer,
    frame_images: dict[str, Path],
) -> None:
    source_id = api.register(frame_images["multipage"])
    keys = "k:signing-secret-0123456789abcdef"
    signed = start_api(
        {**tilecast_env, "TILECAST_ACCESS_MODE": "signed", "TILECAST_SIGNING_KEYS": keys}
    )
    assert_clean_error(signed.get(f"/zarr/{source_id}/.zattrs"), 401)
    expires = int(time.time()) + 600
    for prefix in (f"/item/{source_id}/", f"/item/{source_id}/zarr/"):
        grant = signing.sign(prefix, expires, signing.parse_keys(keys))
        assert signed.get(f"/zarr/{source_id}/0/.zarray", params=grant).status_code == 200
    tiles_only = signing.sign(f"/item/{source_id}/tiles/", expires, signing.parse_keys(keys))
    assert_clean_error(signed.get(f"/zarr/{source_id}/.zattrs", params=tiles_only), 403)
    # zarr readers drop queries: the grant rides in the path.
    whole = signing.sign(f"/item/{source_id}/", expires, signing.parse_keys(keys))
    root = f"/signed/{whole['keyid']}/{whole['expires']}/{whole['signature']}"
    view = open_view(signed, source_id, root=root)
    np.testing.assert_array_equal(view["2"][...], open_view(api, source_id)["2"][...])
    chunk = signed.get(f"{root}/zarr/{source_id}/2/0/0/0/0")
    assert chunk.status_code == 200 and chunk.headers["Cache-Control"].startswith("private")
