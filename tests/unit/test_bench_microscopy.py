"""The microscopy benchmark (section 10) compares like with like: the format library's
reads it times are the pixels of the tiles tilecast serves, its tile lists cover every
tile of every frame, and its cold samples never share a stored chunk or subblock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.bench import bench_microscopy as bench
from tests.bench.direct_side import czi_reader, zarr_reader
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source

# Not a multiple of the tile sizes: the reads must stop at the image's edge as tiles do.
SIDE = 768


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("microscopy")
    return {case.library: case.write(root / case.file_name, SIDE) for case in bench.CASES}


def _metadata(path: Path) -> dict[str, Any]:
    with open_source(str(path), Settings()) as source:
        return source.metadata


def test_every_tile_of_every_frame_frame_by_frame(images: dict[str, Path]) -> None:
    meta = _metadata(images["zarr"])
    tiles = bench.frame_tiles(meta)
    per_frame = 2 * 2 + 1  # 768 px in 512-px tiles, then one 384-px tile
    assert len(meta["frames"]) == bench.CHANNELS * bench.PLANES
    assert len(tiles) == len(meta["frames"]) * per_frame == len(set(tiles))
    assert [tile[3] for tile in tiles] == sorted(tile[3] for tile in tiles)


def test_the_zarr_reads_are_tilecasts_tiles(images: dict[str, Path]) -> None:
    path = images["zarr"]
    meta = _metadata(path)
    tiles = [tile for tile in bench.frame_tiles(meta) if tile[3] in (0, 1, 4, 39)]
    read = zarr_reader(str(path), 0)
    with open_source(str(path), Settings()) as source:
        for tile, spec in zip(tiles, bench._zarr_reads(path, meta, tiles), strict=True):
            pixels = np.squeeze(read(spec))
            served = source.read_tile(*tile).pixels
            assert served is not None
            h, w = pixels.shape
            assert np.array_equal(served[:h, :w, 0], pixels), tile
            assert not served[h:].any() and not served[:, w:].any()


def test_the_czi_reads_are_tilecasts_full_resolution_tiles(images: dict[str, Path]) -> None:
    path = images["czi"]
    meta = _metadata(path)
    top = int(meta["levels"]) - 1
    assert len(meta["frames"]) == bench.CZI_SCENES * bench.CZI_CHANNELS
    tiles = bench.frame_tiles(meta)
    reads = bench._czi_reads(path, meta, tiles)
    read = czi_reader(str(path), 0)
    with open_source(str(path), Settings()) as source:
        for tile, spec in zip(tiles, reads, strict=True):
            pixels = np.squeeze(read(spec))
            if tile[0] != top:
                # Coarser levels: libCZI scales the area itself (tilecast synthesizes
                # them), so only its size is the tile's.
                assert pixels.shape[0] <= 256 and pixels.shape[1] <= 256, tile
                continue
            served = source.read_tile(*tile).pixels
            assert served is not None
            h, w = pixels.shape
            assert np.array_equal(served[:h, :w, 0], pixels), tile


def test_cold_samples_never_share_a_stored_unit(images: dict[str, Path]) -> None:
    meta = _metadata(images["czi"])
    top = int(meta["levels"]) - 1
    # 768 px in one 1024-px subblock per frame: one sample per frame, at most.
    samples = bench.cold_samples(meta, bench.CZI_SUBBLOCK, 20)
    assert len(samples) == len(meta["frames"])
    assert {tile[3] for tile in samples} == set(range(len(meta["frames"])))
    assert all(tile[0] == top for tile in samples)
    assert bench.cold_samples(meta, bench.CZI_SUBBLOCK, 2) == samples[:2]
