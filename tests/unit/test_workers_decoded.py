"""workers/sources/decoded.py: an image libvips must decode whole, past the in-memory
size, is decoded once per machine into a shared tiled copy, within a disk bound, and
refused beyond it (issue 14). Real PNGs written by libvips; the in-memory threshold is
lowered so that small images take the shared path."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import png_header_only
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.sample import sample_image
from tilecast.workers.sources import open_source, vipsimage


@pytest.fixture
def shared_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vipsimage, "IN_MEMORY_BYTES", 0)


def _settings(folder: Path, bound: int = 1024**3) -> Settings:
    return dataclasses.replace(
        Settings(), decode_cache_dir=str(folder), max_decode_disk_bytes=bound
    )


def _png(path: Path, width: int = 700, height: int = 600) -> Path:
    sample_image(width, height).pngsave(str(path))
    return path


def _copies(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tif"))


def _tile(path: Path, settings: Settings, x: int = 1, y: int = 1) -> np.ndarray:
    with open_source(str(path), settings) as source:
        return source.read_tile(source.levels - 1, x, y).array()


def test_small_images_stay_in_memory(tmp_path: Path) -> None:
    png = _png(tmp_path / "small.png")
    _tile(png, _settings(tmp_path / "decoded"))
    assert not (tmp_path / "decoded").exists()


@pytest.mark.usefixtures("shared_path")
def test_one_shared_copy_serves_every_reader(tmp_path: Path) -> None:
    png = _png(tmp_path / "image.png")
    folder = tmp_path / "decoded"
    settings = _settings(folder)
    expected = _tile(png, dataclasses.replace(settings, max_decode_disk_bytes=10**12))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vipsimage, "IN_MEMORY_BYTES", 10**12)
        in_memory = _tile(png, settings)
    assert np.array_equal(expected, in_memory)  # the copy is lossless
    (copy,) = _copies(folder)
    made = copy.stat().st_ino
    # Another reader (another worker process) reads the same copy: no second decode.
    assert np.array_equal(_tile(png, settings, 2, 2)[:5], _tile(png, settings, 2, 2)[:5])
    assert [c.stat().st_ino for c in _copies(folder)] == [made]
    assert not list(folder.glob("*.partial"))


@pytest.mark.usefixtures("shared_path")
def test_a_changed_file_gets_a_new_copy(tmp_path: Path) -> None:
    png = _png(tmp_path / "image.png")
    folder = tmp_path / "decoded"
    before = _tile(png, _settings(folder), 0, 0)
    time.sleep(0.01)
    sample_image(700, 600).invert().pngsave(str(png))
    after = _tile(png, _settings(folder), 0, 0)
    assert not np.array_equal(before, after)
    assert len(_copies(folder)) == 2


def test_an_image_beyond_the_disk_bound_is_refused_before_decoding(tmp_path: Path) -> None:
    png = tmp_path / "bomb.png"
    png.write_bytes(png_header_only(20_000, 20_000))  # 1.2 GB decoded
    settings = _settings(tmp_path / "decoded", bound=1024**3)
    with pytest.raises(UnsupportedImage, match="TILECAST_MAX_DECODE_DISK_BYTES"):
        open_source(str(png), settings)
    assert not (tmp_path / "decoded").exists()


def test_a_small_png_declaring_a_huge_canvas_fails_fast_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Within the bound, its few rows of data end the one decode at once: a 422, no copy
    and no partial file left behind."""
    png = tmp_path / "canvas.png"
    png.write_bytes(png_header_only(20_000, 20_000))
    folder = tmp_path / "decoded"
    settings = _settings(folder, bound=2 * 1024**3)
    with (
        open_source(str(png), settings) as source,
        pytest.raises(UnsupportedImage, match="cannot be decoded"),
    ):
        source.read_tile(source.levels - 1, 0, 0)
    assert list(folder.iterdir()) == [next(folder.glob("*.lock"))]


@pytest.mark.usefixtures("shared_path")
def test_least_recently_used_copies_make_room(tmp_path: Path) -> None:
    folder = tmp_path / "decoded"
    first, second = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    decoded = 700 * 600 * 3
    # Room for one copy (and what its decode may write): the second deletes the first.
    settings = _settings(folder, bound=decoded + 1000)
    _tile(first, settings)
    (old,) = _copies(folder)
    _tile(second, settings)
    (new,) = _copies(folder)
    assert new != old and not old.exists()


@pytest.mark.parametrize(("rows", "shared"), [(300, True), (16, False)])
def test_a_tiff_stored_as_one_huge_strip_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int, shared: bool
) -> None:
    """libtiff decodes a strip whole: a TIFF whose strips pass the in-memory size takes
    the shared copy; one of small strips is read strip by strip, as before."""
    import tifffile

    monkeypatch.setattr(vipsimage, "IN_MEMORY_BYTES", 500_000)
    pixels = np.ndarray((300, 5000, 3), np.uint8, sample_image(5000, 300).write_to_memory())
    path = tmp_path / "striped.tiff"  # wider than the TIFF reader's striped bound
    tifffile.imwrite(path, pixels, rowsperstrip=rows, compression="zlib", photometric="rgb")
    folder = tmp_path / "decoded"
    tile = _tile(path, _settings(folder), 3, 0)
    assert np.array_equal(tile, pixels[0:256, 768:1024])
    assert bool(_copies(folder)) is shared
