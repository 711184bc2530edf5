"""Synthesized levels: large_image parity (PSNR), cost, losslessness, edges."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.unit.conftest import register_source
from tilecast.common.settings import Settings
from tilecast.common.tiles import raw_tile_key
from tilecast.workers.engine import Renderer
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import open_source
from tilecast.workers.synthesis import RawTiles
from tilecast.workers.vipsutil import halve

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)
log = logging.getLogger(__name__)

MIN_PSNR = 30.0


def psnr(ours: np.ndarray, theirs: np.ndarray) -> float:
    mse = float(np.mean((ours.astype(float) - theirs.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _tiles(renderer: Renderer, path: Path) -> RawTiles:
    source_id = register_source(renderer, path)
    source = renderer.open(source_id, 1)
    return renderer.raw_tiles(source, source_id, 1)


@pytest.mark.parametrize("name", ["single", "lzw", "odd_lzw"])
def test_every_synthesized_level_is_close_to_large_image(
    name: str, images: dict[str, Path], wk_images: dict[str, Path], renderer: Renderer
) -> None:
    path = images[name] if name in images else wk_images[name]
    tiles = _tiles(renderer, path)
    source = tiles.source
    theirs = large_image.open(str(path))
    worst: dict[int, float] = {}
    for z in range(source.levels - 1):
        assert not source.is_native_level(z)
        across, down = source.grid.tiles_at(z)
        # Corners (edge tiles) plus one interior tile.
        picks = {(0, 0), (across - 1, 0), (0, down - 1), (across - 1, down - 1)}
        picks.add((across // 2, down // 2))
        for x, y in sorted(picks):
            ours = tiles.get(z, x, y).array()
            expected = theirs.getTile(x, y, z, numpyAllowed="always")[:, :, :3]
            assert ours.shape == expected.shape
            # Over the tile's content: beyond it large_image resizes whatever padding
            # the file's edge tiles hold (libvips repeats the edge in LZW files, writes
            # black in JPEG ones) while tilecast has zeros (tested below).
            w, h = source.tile_content(z, x, y)
            worst[z] = min(worst.get(z, 99.0), psnr(ours[:h, :w], expected[:h, :w]))
    log.info("%s: worst PSNR per synthesized level %s", name, worst)
    assert min(worst.values()) >= MIN_PSNR, worst


def test_a_whole_pyramid_costs_one_read_of_the_base(
    images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, images["single"])
    tiles.get(0, 0, 0)
    assert tiles.counters.take() == (12 * 8, 6 * 4 + 3 * 2 + 2 * 1 + 1)
    source = tiles.source
    for z in range(source.levels - 1):
        across, down = source.grid.tiles_at(z)
        tiles.get_many(z, [(x, y) for y in range(down) for x in range(across)])
    assert tiles.counters.take() == (0, 0)  # every synthesized tile is now a cache hit
    # Native tiles are read from the (open) file every time, never copied into Redis.
    tiles.get(source.levels - 1, 0, 0)
    assert tiles.counters.take() == (1, 0)
    assert tiles.cache.get_many([tiles.key(source.levels - 1, 0, 0)]) == [None]


def test_synthesized_tiles_are_cached_losslessly(
    images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, images["single"])
    fresh = tiles.get(2, 1, 1)
    stored = renderer.cache.get(raw_tile_key(tiles.source_id, 1, 0, 2, 1, 1))
    assert stored is not None
    cached = RawTile.from_bytes(stored)
    assert not cached.is_jpeg
    assert np.array_equal(cached.array(), fresh.array())
    # Native tiles keep the file's own JPEG bytes and are not copied into the cache.
    assert tiles.get(4, 4, 4).is_jpeg
    assert renderer.cache.get(raw_tile_key(tiles.source_id, 1, 0, 4, 4, 4)) is None


def test_edge_tiles_hold_content_top_left_and_zeros_beyond(
    images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, images["single"])
    source = tiles.source
    for z in range(source.levels - 1):
        across, down = source.grid.tiles_at(z)
        x, y = across - 1, down - 1
        w, h = source.tile_content(z, x, y)
        pixels = tiles.get(z, x, y).array()
        assert pixels.shape == (256, 256, 3)
        assert (pixels[:h, :w].mean(axis=2) > 20).all()
        assert not pixels[h:].any() and not pixels[:, w:].any()


def test_non_uint8_data_is_subsampled_like_large_image(
    wk_images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, wk_images["uint16"])
    base = np.concatenate(
        [np.concatenate([tiles.get(2, x, y).array() for x in range(3)], axis=1) for y in range(2)]
    )[:400, :600]
    level1 = tiles.get(1, 0, 0).array()
    assert level1.dtype == np.uint16
    assert np.array_equal(level1[:200, :256], base[::2, ::2][:200, :256])
    theirs = large_image.open(str(wk_images["uint16"])).getTile(0, 0, 1, numpyAllowed="always")
    assert np.array_equal(level1[:200], theirs[:200])


def test_halve_sizes_round_up() -> None:
    assert halve(np.zeros((7, 9, 3), np.uint8)).shape == (4, 5, 3)
    assert halve(np.zeros((7, 9, 1), np.uint16)).shape == (4, 5, 1)
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert (halve(flat) == 77).all()  # lanczos on a constant image is exact


def test_a_plain_image_synthesizes_from_its_only_level(
    images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, images["png"])
    top = tiles.get(0, 0, 0).array()
    with open_source(str(images["png"]), Settings()) as source:
        assert source.tile_content(0, 0, 0) == (250, 175)
    assert top[:175, :250].mean() > 50 and not top[175:].any()


def test_each_frame_synthesizes_from_its_own_pages(
    wk_images: dict[str, Path], renderer: Renderer
) -> None:
    tiles = _tiles(renderer, wk_images["frames"])
    first = tiles.get(0, 0, 0, frame=0).array().astype(int)
    second = tiles.get(0, 0, 0, frame=1).array().astype(int)
    w, h = tiles.source.tile_content(0, 0, 0)
    # The second page is the negative of the first; filtering is linear.
    assert np.abs((255 - first[:h, :w]) - second[:h, :w]).mean() < 1
    assert tiles.key(0, 0, 0, 0) != tiles.key(0, 0, 0, 1)


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
def test_mosaics_halved_together_equal_each_halved_alone(bands: int) -> None:
    from tilecast.workers.vipsutil import HALVE_BATCH, halve_many

    rng = np.random.default_rng(bands)
    noisy = [rng.integers(0, 256, (64, 48, bands), dtype=np.uint8) for _ in range(HALVE_BATCH + 3)]
    # Hard edges at the first and last rows, where stacked mosaics meet.
    edged = np.zeros((64, 48, bands), np.uint8)
    edged[0], edged[-1] = 255, 128
    mosaics = [*noisy, edged, np.full((64, 48, bands), 9, np.uint8)]
    for alone, together in zip(map(halve, mosaics), halve_many(mosaics), strict=True):
        assert np.array_equal(alone, together)


def test_halving_many_falls_back_to_one_by_one_where_it_cannot_stack() -> None:
    from tilecast.workers.vipsutil import halve_many

    odd = [np.full((7, 9, 3), 5, np.uint8), np.full((7, 9, 3), 6, np.uint8)]
    assert [m.shape for m in halve_many(odd)] == [(4, 5, 3), (4, 5, 3)]
    sixteen = [np.arange(64, dtype=np.uint16).reshape(8, 8, 1)] * 2
    assert all(np.array_equal(m, sixteen[0][::2, ::2]) for m in halve_many(sixteen))
    assert halve_many([]) == []
