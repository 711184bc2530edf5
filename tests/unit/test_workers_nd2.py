"""The ND2 reader on modern ND2 files made by tests/nd2writer.py (no ND2 writer exists
and no real ND2 file is fetchable here; the ``nd2`` package reads these back as
written): time, stage positions, z and channels as frames in large_image's nd2 order,
uncompressed frames read by area, compressed ones decoded once per plane, RGB; every
stored pixel of sampled tiles equal to nd2's own read; broken files a 422 naming ND2."""

from __future__ import annotations

import threading
from pathlib import Path

import nd2
import numpy as np
import pytest

from tests.nd2writer import write_nd2
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.files import LocalFile
from tilecast.workers.sources.nd2 import Nd2Source
from tilecast.workers.sources.reader import Probe

LOOPS = [("T", 2), ("P", 3), ("Z", 2)]
SEQUENCE = 2 * 3 * 2


def frames(seed: int = 1, channels: int = 2, height: int = 300, width: int = 550) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (SEQUENCE, channels, height, width), dtype=np.uint16)


@pytest.fixture(scope="module")
def nd2s(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nd2")
    rgb = np.random.default_rng(3).integers(0, 255, (2, 200, 300, 3), dtype=np.uint8)
    return {
        "plain": write_nd2(root / "plain.nd2", frames(), LOOPS, row_padding=4,
                           channel_names=["DAPI", "mCherry"]),
        "zlib": write_nd2(root / "zlib.nd2", frames(), LOOPS, compressed=True,
                          channel_names=["DAPI", "mCherry"]),
        "rgb": write_nd2(root / "rgb.nd2", rgb, [("T", 2)], rgb=True, objective=10.0),
    }  # fmt: skip


def nd2_plane(path: Path, sequence: int, channel: int) -> np.ndarray:
    with nd2.ND2File(str(path)) as f:
        plane = np.array(f.read_frame(sequence))
    return plane if plane.shape[-1] == 3 else plane[channel]


def test_loops_and_channels_are_frames_in_large_images_order(
    nd2s: dict[str, Path], settings: Settings
) -> None:
    with open_source(str(nd2s["plain"]), settings) as source:
        assert isinstance(source, Nd2Source)
        meta = source.metadata
        assert (meta["sizeX"], meta["sizeY"], meta["levels"], meta["dtype"]) == (
            550, 300, 3, "uint16")  # fmt: skip
        assert len(meta["frames"]) == SEQUENCE * 2
        # Channel fastest, then the loops from the innermost (Z) out: P, then T.
        assert meta["IndexStride"] == {"IndexC": 1, "IndexZ": 2, "IndexXY": 4, "IndexT": 12}
        assert meta["IndexRange"] == {"IndexC": 2, "IndexZ": 2, "IndexXY": 3, "IndexT": 2}
        assert meta["channels"] == ["DAPI", "mCherry"]
        assert meta["mm_x"] == pytest.approx(0.325e-3) and meta["magnification"] == 20
        # Frame 13: c=1, z=0, p=0, t=1 -> nd2's sequence frame t*6 + p*2 + z = 6.
        assert source.sequence_index(13) == (6, 1)


@pytest.mark.parametrize("name", ["plain", "zlib"])
def test_native_tiles_equal_nd2s_read(nd2s: dict[str, Path], settings: Settings, name: str) -> None:
    written = frames()
    with open_source(str(nd2s[name]), settings) as source:
        assert source.area_reads == (name == "plain")
        top = source.levels - 1
        for frame in (0, 5, 13, 23):
            sequence, channel = source.sequence_index(frame)
            reference = nd2_plane(nd2s[name], sequence, channel)
            assert np.array_equal(reference, written[sequence, channel])
            for x in range(3):
                for y in range(2):
                    tile = source.read_tile(top, x, y, frame).pixels
                    want = reference[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
                    h, w = want.shape
                    assert np.array_equal(tile[:h, :w, 0], want) and not tile[h:].any()


def test_a_compressed_plane_is_decoded_once(nd2s: dict[str, Path], settings: Settings) -> None:
    with open_source(str(nd2s["zlib"]), settings) as source:
        assert isinstance(source, Nd2Source)
        errors: list[BaseException] = []

        def read(frame: int) -> None:
            try:
                for x in range(3):
                    source.read_tile(source.levels - 1, x, 1, frame)
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        # Both channels of sequence frame 0, from four threads at once: one decode.
        threads = [threading.Thread(target=read, args=(frame % 2,)) for frame in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and source._planes.decodes == 1
        assert source.estimated_bytes >= 2 * 300 * 550 * 2


def test_rgb(nd2s: dict[str, Path], settings: Settings) -> None:
    with open_source(str(nd2s["rgb"]), settings) as source:
        assert (source.band_count, source.frame_count, source.magnification) == (3, 2, 10)
        tile = source.read_tile(source.levels - 1, 1, 0, 1).pixels
        reference = nd2_plane(nd2s["rgb"], 1, 0)
        assert np.array_equal(tile[:200, :44], reference[:, 256:])


def test_a_file_read_through_positioned_reads(nd2s: dict[str, Path], settings: Settings) -> None:
    """A file without a local path (Girder by HTTP ranges) is read through
    ImageFile.read; its frames are then decoded whole, into the plane cache."""

    class Remote(LocalFile):
        pass

    remote = Remote(str(nd2s["plain"]))
    remote.local_path = None
    with Nd2Source.open(Probe(remote), settings) as source:
        assert isinstance(source, Nd2Source) and not source.area_reads
        tile = source.read_tile(source.levels - 1, 2, 1, 13).pixels
        assert np.array_equal(tile[:44, :38, 0], frames()[6, 1, 256:, 512:])


def test_recognised_by_content(nd2s: dict[str, Path], tmp_path: Path) -> None:
    with LocalFile(str(nd2s["rgb"])) as file:
        assert Nd2Source.can_read(Probe(file))
    jp2 = tmp_path / "legacy.nd2"  # a legacy ND2 starts as a JPEG 2000 file: not ours
    jp2.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(200))
    with LocalFile(str(jp2)) as file:
        assert not Nd2Source.can_read(Probe(file))


def test_broken_files_are_a_422(nd2s: dict[str, Path], tmp_path: Path) -> None:
    data = nd2s["plain"].read_bytes()
    zdata = nd2s["zlib"].read_bytes()
    frame0 = zdata.index(b"ImageDataSeq|0!")
    cases = {
        "tail.nd2": data[:-100],  # the chunk map is gone
        "middle.nd2": data[: len(data) // 2] + data[-2000:],  # frames past the end
        "garbled.nd2": zdata[: frame0 + 4072 + 12] + b"\xff" * 64 + zdata[frame0 + 4072 + 76 :],
    }
    for name, body in cases.items():
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(UnsupportedImage) as caught, open_source(str(path), Settings()) as src:
            src.read_tile(src.levels - 1, 0, 0, 0)
        assert caught.value.message.startswith("ND2: "), name
        assert str(tmp_path) not in caught.value.message


def test_past_the_decode_bound(nd2s: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage, match="ND2: the image has 165000 pixels"):
        open_source(str(nd2s["plain"]), Settings(max_decode_pixels=1000))
