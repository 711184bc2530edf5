"""The CZI reader on files written by Zeiss's own writer (pylibCZIrw): scenes of
different sizes, channels, z and t as frames, zstd-compressed and uncompressed
subblocks, RGB, a stored pyramid; every stored pixel of sampled tiles equal to libCZI's
own full-resolution read; broken files refused with a 422 naming CZI."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from pylibCZIrw import czi as pyczi

from tests.cziwriter import Scene, reduce2, write_czi
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.czi import CziSource
from tilecast.workers.sources.files import LocalFile
from tilecast.workers.sources.openslide import OpenSlideSource
from tilecast.workers.sources.reader import Probe
from tilecast.workers.sources.registry import default_registry

CHANNELS, ZS, TS = 2, 3, 2
ZSTD = "zstd1:ExplicitLevel=2;PreProcess=HiLoByteUnpack"


def planes(
    width: int, height: int, seed: int, dtype: type = np.uint16, rgb: bool = False
) -> dict[tuple[int, int, int], np.ndarray]:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1
    shape = (height, width, 3) if rgb else (height, width)
    out = {}
    for c in range(CHANNELS if not rgb else 1):
        for z in range(ZS if not rgb else 1):
            for t in range(TS if not rgb else 1):
                if np.issubdtype(dtype, np.integer):
                    out[(c, z, t)] = rng.integers(0, top, shape, dtype=dtype)
                else:
                    out[(c, z, t)] = rng.random(shape, dtype=np.float32)
    return out


@pytest.fixture(scope="module")
def czis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("czi")
    # Two scenes of different sizes at their stage positions; zstd-compressed subblocks
    # of 256 px, so that a tile's area spans several of them.
    scenes = [Scene(100, 50, 700, 500, planes(700, 500, 1)),
              Scene(1200, 900, 300, 650, planes(300, 650, 2))]  # fmt: skip
    out = {
        "scenes": write_czi(root / "scenes.czi", scenes, compression=ZSTD,
                            channel_names=["DAPI", "GFP"], scale_m=0.25e-6, subblock=300),
        "rgb": write_czi(root / "rgb.czi", [Scene(0, 0, 520, 300, planes(520, 300, 3,
                         np.uint8, rgb=True))]),
        "float": write_czi(root / "float.czi", [Scene(0, 0, 300, 200, planes(300, 200, 4,
                           np.float32))], compression="zstd0:ExplicitLevel=1"),
        "pyramid": write_czi(root / "pyramid.czi", [Scene(0, 0, 1100, 700, {(0, 0, 0):
                             planes(1100, 700, 5, np.uint8)[(0, 0, 0)]})], pyramid=True),
    }  # fmt: skip
    return out


def scene_read(path: Path, frame_plane: tuple[dict[str, int], int]) -> np.ndarray:
    """libCZI's own full-resolution read of a frame's whole scene."""
    plane, scene = frame_plane
    with pyczi.open_czi(str(path)) as czi:
        rect = czi.scenes_bounding_rectangle_no_pyramid.get(scene, czi.total_bounding_rectangle)
        pixels = czi.read(roi=(rect.x, rect.y, rect.w, rect.h), plane=plane, scene=scene)
    return pixels if pixels.ndim == 3 else pixels[:, :, np.newaxis]


def test_scenes_channels_z_t_are_frames(czis: dict[str, Path], settings: Settings) -> None:
    with open_source(str(czis["scenes"]), settings) as source:
        assert isinstance(source, CziSource)
        meta = source.metadata
        # The largest scene's width and height; levels for 256-pixel tiles.
        assert (meta["sizeX"], meta["sizeY"]) == (700, 650)
        assert (meta["tileWidth"], meta["levels"], meta["dtype"]) == (256, 3, "uint16")
        assert meta["bandCount"] == 1
        assert len(meta["frames"]) == CHANNELS * ZS * TS * 2
        assert meta["IndexRange"] == {"IndexC": 2, "IndexZ": 3, "IndexT": 2, "IndexXY": 2}
        assert meta["IndexStride"] == {"IndexC": 1, "IndexZ": 2, "IndexT": 6, "IndexXY": 12}
        assert meta["channels"] == ["DAPI", "GFP"]
        assert meta["channelmap"] == {"DAPI": 0, "GFP": 1}
        frame = meta["frames"][13]
        assert {k: frame[k] for k in ("IndexC", "IndexZ", "IndexT", "IndexXY")} == {
            "IndexC": 1, "IndexZ": 0, "IndexT": 0, "IndexXY": 1}  # fmt: skip
        assert frame["Channel"] == "GFP"
        assert meta["mm_x"] == pytest.approx(0.25e-3) and meta["mm_y"] == pytest.approx(0.25e-3)
        assert meta["magnification"] == pytest.approx(40.0)  # none recorded: 0.01 / mm_x


def test_compressed_subblocks_are_zstd(czis: dict[str, Path]) -> None:
    modes: set[str] = set()
    with pyczi.open_czi(str(czis["scenes"])) as czi:
        czi.enumerate_subblocks(
            lambda _i, info: modes.add(info.get_compression_mode().name) or True
        )
    assert modes == {"Zstd1"}


@pytest.mark.parametrize("frame", [0, 5, 11, 12, 23])
def test_native_tiles_equal_libczis_read(
    czis: dict[str, Path], settings: Settings, frame: int
) -> None:
    with open_source(str(czis["scenes"]), settings) as source:
        reference = scene_read(czis["scenes"], source.frame_plane(frame))
        top = source.levels - 1
        across, down = source.grid.tiles_at(top)
        for x in range(across):
            for y in range(down):
                tile = source.read_tile(top, x, y, frame).pixels
                assert tile is not None and tile.shape == (256, 256, 1)
                want = reference[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
                h, w = want.shape[:2]
                assert np.array_equal(tile[:h, :w], want), (x, y)
                # Beyond a smaller scene's edge, and beyond the image: black.
                assert not tile[h:].any() and not tile[:, w:].any()


def test_the_writers_pixels_come_back(czis: dict[str, Path], settings: Settings) -> None:
    """Not only libCZI's read: the very planes written (scene 1, c=1, z=2, t=1)."""
    written = planes(300, 650, 2)[(1, 2, 1)]
    with open_source(str(czis["scenes"]), settings) as source:
        frame = 1 + 2 * 2 + 1 * 6 + 1 * 12
        tile = source.read_tile(2, 0, 2, frame).pixels
        assert np.array_equal(tile[: 650 - 512, :256, 0], written[512:, :256])


def test_rgb_is_served_as_rgb(czis: dict[str, Path], settings: Settings) -> None:
    written = planes(520, 300, 3, np.uint8, rgb=True)[(0, 0, 0)]
    with open_source(str(czis["rgb"]), settings) as source:
        assert (source.band_count, str(source.dtype), source.frame_count) == (3, "uint8", 1)
        assert "frames" not in source.metadata
        reference = scene_read(czis["rgb"], source.frame_plane(0))
        tile = source.read_tile(source.levels - 1, 2, 1).pixels
        # libCZI hands out Bgr24 in B, G, R order; tilecast serves R, G, B.
        assert np.array_equal(tile[:44, :8], reference[256:300, 512:520, ::-1])
        # The writer was given the array as the file's B, G, R memory order.
        assert np.array_equal(tile[:44, :8], written[256:300, 512:520, ::-1])


def test_float32(czis: dict[str, Path], settings: Settings) -> None:
    with open_source(str(czis["float"]), settings) as source:
        assert str(source.dtype) == "float32" and source.frame_count == CHANNELS * ZS * TS
        reference = scene_read(czis["float"], source.frame_plane(7))
        tile = source.read_tile(source.levels - 1, 1, 0, 7).pixels
        assert np.array_equal(tile[:200, :44], reference[:, 256:])


def test_a_stored_pyramid_is_read_natively(czis: dict[str, Path], settings: Settings) -> None:
    full = planes(1100, 700, 5, np.uint8)[(0, 0, 0)]
    with open_source(str(czis["pyramid"]), settings) as source:
        top = source.levels - 1
        assert source.native_level_size(top - 1) == (550, 350)
        assert source.native_level_size(top - 2) is None  # synthesized by tilecast
        tile = source.read_tile(top - 1, 2, 1).pixels
        # The pyramid subblock's own pixels (the writer's 2 x 2 means), not a reduction
        # of full resolution made here.
        assert np.array_equal(tile[: 350 - 256, : 550 - 512, 0], reduce2(full)[256:, 512:])


def test_threads_read_the_same_pixels(czis: dict[str, Path], settings: Settings) -> None:
    with open_source(str(czis["scenes"]), settings) as source:
        wanted = {f: source.read_tile(2, 1, 1, f).pixels for f in range(0, 24, 3)}
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for _ in range(5):
                    for frame, pixels in wanted.items():
                        got = source.read_tile(2, 1, 1, frame).pixels
                        assert np.array_equal(got, pixels)
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors


def test_recognised_by_content(czis: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "scan.bin"
    renamed.write_bytes(czis["rgb"].read_bytes())
    with LocalFile(str(renamed)) as file:
        assert CziSource.can_read(Probe(file))
    other = tmp_path / "not.czi"
    other.write_bytes(b"ZISRAWFIL" + bytes(600))
    with LocalFile(str(other)) as file:
        assert not CziSource.can_read(Probe(file))


def test_no_other_reader_claims_a_czi(czis: dict[str, Path]) -> None:
    """OpenSlide reads CZI too, but every CZI it reads libCZI reads, and the CZI reader
    passes none on: the OpenSlide reader does not recognise one."""
    for path in czis.values():
        with LocalFile(str(path)) as file:
            probe = Probe(file)
            assert [reader.name for reader in default_registry().candidates(probe)] == ["czi"]
            assert not OpenSlideSource.can_read(probe)


def test_a_truncated_czi_is_a_422_naming_czi(
    czis: dict[str, Path], settings: Settings, tmp_path: Path
) -> None:
    data = czis["scenes"].read_bytes()
    for name, body in [("head.czi", data[:600]), ("half.czi", data[: len(data) // 2]),
                       ("zeros.czi", data[:16] + bytes(4000))]:  # fmt: skip
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(UnsupportedImage) as caught, open_source(str(path), settings) as source:
            top = source.levels - 1
            for frame in range(source.frame_count):
                source.read_tile(top, 0, 0, frame)
        assert caught.value.message.startswith("CZI")
        assert str(tmp_path) not in caught.value.message


def test_a_czi_past_the_decode_bound_is_refused(czis: dict[str, Path], settings: Settings) -> None:
    small = Settings(max_decode_pixels=1000)
    with pytest.raises(UnsupportedImage, match="CZI: the image has 455000 pixels"):
        open_source(str(czis["scenes"]), small)


def test_a_file_not_on_a_local_filesystem_is_refused(czis: dict[str, Path]) -> None:
    class Remote(LocalFile):
        local_path = None

    remote = Remote(str(czis["rgb"]))
    remote.local_path = None
    with pytest.raises(UnsupportedImage, match="local filesystem"):
        CziSource(remote, Settings())
    remote.close()
