"""The LIF reader on files laid out as LAS X writes them (tests/lifwriter.py; no LIF
writer exists in Python and no real LIF file is fetchable here): channels, z, t and
same-shaped images as frames, RGB, a larger tiled image read by area; every stored
pixel of sampled tiles equal to liffile's own full-plane read (and to what was
written); lying and truncated files refused with a 422 naming LIF."""

from __future__ import annotations

from pathlib import Path

import liffile
import numpy as np
import pytest
import readlif.reader

from tests.lifwriter import LifImage, write_lif
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.files import LocalFile
from tilecast.workers.sources.lif import LifSource
from tilecast.workers.sources.reader import Probe


def stack(seed: int, t: int, z: int, c: int, h: int, w: int, dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, (t, z, c, h, w), dtype=dtype)


@pytest.fixture(scope="module")
def lifs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lif")
    return {
        # Two positions of the same shape (frames), a small overview of another (left out).
        "series": write_lif(root / "series.lif", [
            LifImage("overview", stack(9, 1, 1, 1, 90, 120, np.uint8)),
            LifImage("Position 1", stack(1, 2, 3, 2, 600, 700), magnification=63),
            LifImage("Position 2", stack(2, 2, 3, 2, 600, 700), magnification=63),
        ]),
        "rgb": write_lif(root / "rgb.lif", [LifImage(
            "brightfield", np.random.default_rng(3).integers(0, 255, (1, 1, 300, 520, 3),
                                                             dtype=np.uint8), rgb=True)]),
        "large": write_lif(root / "large.lif", [LifImage("merged", stack(4, 1, 1, 1, 2000, 3000,
                                                         np.uint8), pixel_size_m=0.3e-6)]),
    }  # fmt: skip


def test_channels_z_t_and_positions_are_frames(lifs: dict[str, Path], settings: Settings) -> None:
    with open_source(str(lifs["series"]), settings) as source:
        assert isinstance(source, LifSource)
        meta = source.metadata
        assert (meta["sizeX"], meta["sizeY"], meta["levels"], meta["dtype"]) == (
            700, 600, 3, "uint16")  # fmt: skip
        assert len(meta["frames"]) == 2 * 3 * 2 * 2
        assert meta["IndexRange"] == {"IndexC": 2, "IndexZ": 3, "IndexT": 2, "IndexXY": 2}
        assert meta["IndexStride"] == {"IndexC": 1, "IndexZ": 2, "IndexT": 6, "IndexXY": 12}
        assert meta["mm_x"] == pytest.approx(5e-4) and meta["magnification"] == 63


@pytest.mark.parametrize("frame", [0, 7, 12, 23])
def test_native_tiles_equal_liffiles_read(
    lifs: dict[str, Path], settings: Settings, frame: int
) -> None:
    with (
        open_source(str(lifs["series"]), settings) as source,
        liffile.LifFile(lifs["series"]) as lif,
    ):
        info = source.frame_info[frame]
        image = lif.images[1 + info["IndexXY"]]
        reference = image.frame(C=info["IndexC"], Z=info["IndexZ"], T=info["IndexT"])
        written = stack(1 + info["IndexXY"], 2, 3, 2, 600, 700)
        assert np.array_equal(reference, written[info["IndexT"], info["IndexZ"], info["IndexC"]])
        top = source.levels - 1
        for x in range(3):
            for y in range(3):
                tile = source.read_tile(top, x, y, frame).pixels
                want = reference[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
                h, w = want.shape
                assert np.array_equal(tile[:h, :w, 0], want) and not tile[h:].any()


def test_readlif_reads_the_same_file(lifs: dict[str, Path]) -> None:
    """The test files are LIF as a second, independent reader understands it."""
    image = readlif.reader.LifFile(str(lifs["series"])).get_image(2)
    plane = np.asarray(image.get_frame(z=1, t=1, c=1))
    assert np.array_equal(plane, stack(2, 2, 3, 2, 600, 700)[1, 1, 1])


def test_rgb(lifs: dict[str, Path], settings: Settings) -> None:
    with open_source(str(lifs["rgb"]), settings) as source, liffile.LifFile(lifs["rgb"]) as lif:
        assert (source.band_count, source.frame_count) == (3, 1)
        assert "frames" not in source.metadata
        reference = lif.images[0].asarray()  # R, G, B
        tile = source.read_tile(source.levels - 1, 2, 1).pixels
        assert np.array_equal(tile[:44, :8], reference[256:, 512:])


def test_a_large_plane_is_read_by_area(lifs: dict[str, Path], settings: Settings) -> None:
    """A tile costs the bytes of its rows, not of the plane."""
    reads: list[int] = []

    class Counting(LocalFile):
        def read(self, offset: int, count: int) -> bytes:
            reads.append(count)
            return super().read(offset, count)

    source = LifSource.open(Probe(Counting(str(lifs["large"]))), settings)
    with source, liffile.LifFile(lifs["large"]) as lif:
        reference = lif.images[0].asarray()
        reads.clear()
        tile = source.read_tile(source.levels - 1, 5, 3).pixels
        assert np.array_equal(tile[:, :, 0], reference[768:1024, 1280:1536])
        assert sum(reads) <= 256 * 3000  # the rows' span: 0.77 MB of the 6 MB plane


def test_recognised_by_content(lifs: dict[str, Path], tmp_path: Path) -> None:
    with LocalFile(str(lifs["rgb"])) as file:
        assert LifSource.can_read(Probe(file))
    other = tmp_path / "x.lif"
    other.write_bytes(b"\x70\x00\x00\x00" + bytes(100))
    with LocalFile(str(other)) as file:
        assert not LifSource.can_read(Probe(file))


def test_a_truncated_lif_is_a_422(lifs: dict[str, Path], tmp_path: Path) -> None:
    data = lifs["series"].read_bytes()
    for name, body in [("tail.lif", data[:-1000]), ("xml.lif", data[:3000])]:
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(UnsupportedImage) as caught:
            open_source(str(path), Settings())
        assert caught.value.message.startswith("LIF: ")
        assert str(tmp_path) not in caught.value.message


def test_a_layout_past_its_block_is_a_422(lifs: dict[str, Path], tmp_path: Path) -> None:
    """An XML that claims more pixels than its memory block holds is refused at open."""
    data = lifs["rgb"].read_bytes()
    claim = 'NumberOfElements="520"'.encode("utf-16-le")
    lying = data.replace(claim, 'NumberOfElements="920"'.encode("utf-16-le"), 1)
    assert lying != data
    path = tmp_path / "lying.lif"
    path.write_bytes(lying)
    with pytest.raises(UnsupportedImage, match=r"^LIF: image 'brightfield' addresses"):
        open_source(str(path), Settings())


def test_past_the_decode_bound(lifs: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage, match="LIF: the image has 6000000 pixels"):
        open_source(str(lifs["large"]), Settings(max_decode_pixels=10**6))
