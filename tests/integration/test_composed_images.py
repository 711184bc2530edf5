"""Composed images end to end: a JSON or YAML description of several TIFFs
(tests/images_composed.py) registered through the api like any file, its metadata with
frames and channel names, its tiles per frame (``zxy?frame=`` and ``fzxy``), a style that
picks frames, and the refusals of a bad description or one reaching outside the source
roots -- served by real workers, compared with numpy and with large_image's multi
source on the same description.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import ApiServer
from tests.images_composed import (
    CHANNEL_SIZE,
    CHANNELS,
    channel_plane,
    channels_description,
    field_pixels,
    make_parts,
    mosaic_description,
    write_description,
)
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.integration
large_image_source_multi = pytest.importorskip("large_image_source_multi")

METADATA_KEYS = (
    "levels", "sizeX", "sizeY", "tileWidth", "tileHeight", "dtype", "bandCount", "frames",
    "IndexRange", "IndexStride", "channels", "channelmap",
)  # fmt: skip
# Each channel under a colour, the three added: large_image's composite style.
COMPOSITE = {
    "bands": [
        {"frame": 0, "palette": "#0000ff", "min": 0, "max": 62000},
        {"frame": 1, "palette": "#00ff00", "min": 0, "max": 62000},
        {"frame": 2, "palette": "#ff0000", "min": 0, "max": 62000},
    ]
}


@pytest.fixture(scope="module")
def folder(source_root: Path) -> Path:
    root = source_root / "composed-e2e"
    make_parts(root)
    write_description(root / "channels.yaml", channels_description(), as_yaml=True)
    write_description(root / "mosaic.json", mosaic_description())
    return root


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    array = np.asarray(image)
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def theirs(path: Path, **options: Any) -> Any:
    return large_image_source_multi.open(str(path), noCache=True, **options)


def test_a_description_is_one_image_with_channel_frames(api: ApiServer, folder: Path) -> None:
    path = folder / "channels.yaml"
    source = api.register(path)
    meta = api.get(f"/item/{source}/tiles")
    assert meta.status_code == 200, meta.text
    body = meta.json()
    expected = json.loads(json.dumps(theirs(path).getMetadata()))
    assert {key: body.get(key) for key in METADATA_KEYS} == {
        key: expected.get(key) for key in METADATA_KEYS
    }
    assert (body["sizeX"], body["sizeY"], body["channels"]) == (*CHANNEL_SIZE, list(CHANNELS))
    assert [frame["Channel"] for frame in body["frames"]] == list(CHANNELS)

    # Full resolution: each frame is its file, every stored value (a 16-bit TIFF tile).
    z = body["levels"] - 1
    for frame in range(3):
        for x, y in [(0, 0), (2, 1)]:
            tile = api.get(f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=TIFF&frame={frame}")
            assert tile.status_code == 200, tile.text
            got = tifffile.imread(io.BytesIO(tile.content)).reshape(256, 256, 1)
            want = channel_plane(frame)[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
            assert np.array_equal(got[: want.shape[0], : want.shape[1]], want), (frame, x, y)

    # A lower level (composed from the parts' own levels), through fzxy, as large_image's.
    reference = theirs(path, encoding="PNG")
    tile = api.get(f"/item/{source}/tiles/fzxy/2/0/0/0?encoding=PNG")
    assert tile.status_code == 200, tile.text
    got, want = decode(tile.content), decode(reference.getTile(0, 0, 0, frame=2))
    height, width = -(-CHANNEL_SIZE[1] // 4), -(-CHANNEL_SIZE[0] // 4)
    assert np.abs(got[:height, :width].astype(int) - want[:height, :width].astype(int)).max() <= 1


def test_a_style_composites_the_frames(api: ApiServer, folder: Path) -> None:
    path = folder / "channels.yaml"
    source = api.register(path)
    reference = theirs(path, style=json.dumps(COMPOSITE), encoding="PNG")
    z = reference.levels - 1
    response = api.get(
        f"/item/{source}/tiles/zxy/{z}/1/1",
        params={"style": json.dumps(COMPOSITE), "encoding": "PNG"},
    )
    assert response.status_code == 200, response.text
    ours, want = decode(response.content), decode(reference.getTile(1, 1, z))
    ours, want = ours[: CHANNEL_SIZE[1] - 256, :256], want[: CHANNEL_SIZE[1] - 256, :256]
    assert len(np.unique(want.reshape(-1, want.shape[2]), axis=0)) > 100
    assert np.abs(ours.astype(int) - want.astype(int)).max() <= 1


def test_fields_side_by_side_are_one_frame(api: ApiServer, folder: Path) -> None:
    source = api.register(folder / "mosaic.json")
    body = api.get(f"/item/{source}/tiles").json()
    assert (body["sizeX"], body["sizeY"], body["bandCount"]) == (1200, 400, 3)
    assert "frames" not in body
    mosaic = np.hstack([field_pixels("left"), field_pixels("right")])
    z = body["levels"] - 1
    for x, y in [(2, 0), (4, 1)]:  # across the seam; the last, partly covered tile
        tile = api.get(f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=PNG")
        assert tile.status_code == 200, tile.text
        want = mosaic[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
        got = decode(tile.content)[: want.shape[0], : want.shape[1]]
        assert np.array_equal(got, want), (x, y)


def test_a_bad_description_is_a_422_naming_the_entry(api: ApiServer, folder: Path) -> None:
    path = write_description(
        folder / "bad.json",
        {"sources": [{"path": "left.tiff"}, {"path": "right.tiff", "position": {"scale": -2}}]},
    )
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=60)
    body = assert_error(response, 422, "unsupported_image")
    assert body["message"] == "composed image: sources[1].position.scale must be > 0"


def test_a_description_reaching_outside_the_roots_is_refused(
    api: ApiServer, folder: Path, outside_file: Path
) -> None:
    path = write_description(
        folder / "escape.json",
        {"sources": [{"path": "left.tiff"}, {"path": str(outside_file), "z": 0}]},
    )
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=60)
    body = assert_error(response, 422, "unsupported_image")
    assert body["message"] == (
        "composed image: sources[1].path is outside the configured source roots"
    )
    assert str(outside_file) not in response.text
