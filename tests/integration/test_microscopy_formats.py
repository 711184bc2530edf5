"""Microscopy files served end to end: registered through the api, rendered by real
workers. A CZI written by pylibCZIrw (two scenes of different sizes, channels, z,
zstd-compressed subblocks): metadata with frames, native tiles of several frames equal
to libCZI's own read, a synthesized level, a style that picks frames; a truncated CZI is
a 422 naming the format. An ND2 and a LIF made by the tests' writers: frames, a native
tile, a synthesized one, a 422."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pylibCZIrw import czi as pyczi

from tests.conftest import ApiServer
from tests.cziwriter import Scene, write_czi
from tests.integration.test_bad_input import assert_error
from tests.lifwriter import LifImage, write_lif
from tests.nd2writer import write_nd2

pytestmark = pytest.mark.integration

CHANNELS, ZS = 2, 2
SCENES = [(40, 30, 600, 400), (900, 0, 350, 520)]  # x, y, width, height


def smooth(width: int, height: int, frame: int) -> np.ndarray:
    """A gradient per frame (no wrap-around), so that a fair 2 x 2 reduction is the mean
    within rounding."""
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs * 150 // width + ys * 50 // height + frame * 5).astype(np.uint8)


@pytest.fixture(scope="module")
def czi_file(source_root: Path) -> Path:
    scenes = []
    for number, (x, y, w, h) in enumerate(SCENES):
        planes = {
            (c, z, 0): smooth(w, h, c + z * CHANNELS + number * CHANNELS * ZS)
            for c in range(CHANNELS)
            for z in range(ZS)
        }
        scenes.append(Scene(x, y, w, h, planes))
    return write_czi(source_root / "micro" / "scenes.czi", scenes,
                     compression="zstd1:ExplicitLevel=1", channel_names=["DAPI", "CY5"],
                     scale_m=0.5e-6, subblock=256)  # fmt: skip


def png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    array = np.asarray(image)
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def libczi_scene(path: Path, scene: int, c: int, z: int) -> np.ndarray:
    with pyczi.open_czi(str(path)) as czi:
        rect = czi.scenes_bounding_rectangle_no_pyramid[scene]
        pixels = czi.read(roi=(rect.x, rect.y, rect.w, rect.h), plane={"C": c, "Z": z},
                          scene=scene)  # fmt: skip
    return pixels[:, :, 0]


def test_a_czi_end_to_end(api: ApiServer, czi_file: Path) -> None:
    source = api.register(czi_file)
    meta = api.get(f"/item/{source}/tiles")
    assert meta.status_code == 200, meta.text
    body = meta.json()
    assert (body["sizeX"], body["sizeY"], body["levels"]) == (600, 520, 3)
    assert body["mm_x"] == pytest.approx(5e-4) and body["magnification"] == pytest.approx(20)
    assert len(body["frames"]) == CHANNELS * ZS * len(SCENES)
    assert body["IndexRange"] == {"IndexC": 2, "IndexZ": 2, "IndexXY": 2}
    assert body["channels"] == ["DAPI", "CY5"]

    # Native tiles of three frames: every pixel libCZI reads, black beyond a scene.
    for frame, (x, y) in [(0, (0, 0)), (3, (2, 1)), (6, (1, 2))]:
        c, z, scene = frame % CHANNELS, (frame // CHANNELS) % ZS, frame // (CHANNELS * ZS)
        reference = libczi_scene(czi_file, scene, c, z)
        tile = api.get(f"/item/{source}/tiles/zxy/2/{x}/{y}",
                       params={"frame": str(frame), "encoding": "PNG"})  # fmt: skip
        assert tile.status_code == 200, tile.text
        got = png(tile.content)[:, :, 0]
        want = reference[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
        h, w = want.shape
        assert np.array_equal(got[:h, :w], want), frame
        inside_w, inside_h = min(256, 600 - x * 256), min(256, 520 - y * 256)
        assert not got[h:inside_h, :inside_w].any() and not got[:inside_h, w:inside_w].any()

    # A synthesized level of frame 5 (scene 1): each pixel the mean of 2 x 2 within 1,
    # away from the scene's edge (black beyond it: the filter blends the two there).
    low = api.get(f"/item/{source}/tiles/zxy/1/0/0", params={"frame": "5", "encoding": "PNG"})
    assert low.status_code == 200, low.text
    got = png(low.content)[:, :, 0].astype(int)
    full = libczi_scene(czi_file, 1, 1, 0)[:512, :350].astype(float)
    halved = full.reshape(256, 2, 175, 2).mean(axis=(1, 3))
    assert np.abs(got[:256, :170] - halved[:, :170]).max() <= 1

    # A style picking frames: frame 2 in red, frame 1 in green.
    style = {"bands": [
        {"frame": 2, "palette": ["#000000", "#ff0000"], "min": 0, "max": 255},
        {"frame": 1, "palette": ["#000000", "#00ff00"], "min": 0, "max": 255},
    ]}  # fmt: skip
    styled = api.get(f"/item/{source}/tiles/zxy/2/0/0",
                     params={"style": json.dumps(style), "encoding": "PNG"})  # fmt: skip
    assert styled.status_code == 200, styled.text
    rgb = png(styled.content)
    assert np.abs(rgb[:256, :256, 0].astype(int) - libczi_scene(czi_file, 0, 0, 1)[:256, :256]
                  ).max() <= 1  # fmt: skip
    assert np.abs(rgb[:256, :256, 1].astype(int) - libczi_scene(czi_file, 0, 1, 0)[:256, :256]
                  ).max() <= 1  # fmt: skip


def test_a_truncated_czi_is_a_422(api: ApiServer, czi_file: Path) -> None:
    cut = czi_file.with_name("cut.czi")
    cut.write_bytes(czi_file.read_bytes()[:5000])
    response = api.http.post(api.url("/sources"), json={"path": str(cut)}, timeout=60)
    body = assert_error(response, 422, "unsupported_image")
    assert body["message"].startswith("CZI:")
    assert str(cut.parent) not in body["message"]


def test_an_nd2_and_a_lif_end_to_end(api: ApiServer, source_root: Path) -> None:
    """The ND2 and LIF readers through the api too (files made by the tests' writers:
    neither format has a writer of its own)."""
    folder = source_root / "micro"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    stack = rng.integers(0, 255, (2 * 3, 2, 300, 400), dtype=np.uint8)  # (t, z) x c
    nd2_path = write_nd2(folder / "movie.nd2", stack, [("T", 2), ("Z", 3)], compressed=True)
    lif_path = write_lif(
        folder / "stack.lif", [LifImage("stack", stack.reshape(2, 3, 2, 300, 400))]
    )
    for path, strides in [(nd2_path, {"IndexC": 1, "IndexZ": 2, "IndexT": 6}),
                          (lif_path, {"IndexC": 1, "IndexZ": 2, "IndexT": 6})]:  # fmt: skip
        source = api.register(path)
        body = api.get(f"/item/{source}/tiles").json()
        assert (body["sizeX"], body["sizeY"], body["levels"]) == (400, 300, 2), path.name
        assert body["IndexStride"] == strides and len(body["frames"]) == 12
        # Frame 9: c=1, z=1, t=1 -> the writer's sequence frame t*3 + z = 4, channel 1.
        tile = api.get(f"/item/{source}/tiles/zxy/1/1/1", params={"frame": "9", "encoding": "PNG"})
        assert tile.status_code == 200, tile.text
        got = png(tile.content)[:, :, 0]
        assert np.array_equal(got[:44, :144], stack[4, 1, 256:, 256:]), path.name
        low = api.get(f"/item/{source}/tiles/zxy/0/0/0", params={"frame": "9"})
        assert low.status_code == 200, low.text

    cut = folder / "cut.lif"
    cut.write_bytes(lif_path.read_bytes()[:-5000])
    response = api.http.post(api.url("/sources"), json={"path": str(cut)}, timeout=60)
    assert assert_error(response, 422, "unsupported_image")["message"].startswith("LIF:")
