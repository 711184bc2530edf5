"""Tiles the TIFF reader inflates itself (deflate, LZW, none) equal libvips' decoding."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import pyvips

from tilecast.common.settings import Settings
from tilecast.workers.sources import codecs, tiffdir
from tilecast.workers.sources.files import open_local
from tilecast.workers.sources.registry import default_registry
from tilecast.workers.vipsutil import to_numpy


def _image(bands: int, sixteen: bool) -> pyvips.Image:
    xy = pyvips.Image.xyz(700, 500)
    planes = [(xy[0] * 3 + xy[1] * (i + 1)) % 251 for i in range(bands)]
    image = planes[0].bandjoin(planes[1:]) if bands > 1 else planes[0]
    return (image * 257).cast("ushort") if sixteen else image.cast("uchar")


@pytest.mark.parametrize("compression", ["none", "deflate", "lzw"])
@pytest.mark.parametrize("predictor", ["none", "horizontal"])
@pytest.mark.parametrize(("bands", "sixteen"), [(3, False), (1, True), (4, False)])
def test_inflated_tiles_equal_libvips_decoding(
    tmp_path: Path, compression: str, predictor: str, bands: int, sixteen: bool
) -> None:
    path = tmp_path / "single.tiff"
    image = _image(bands, sixteen)
    image.tiffsave(str(path), tile=True, tile_width=256, tile_height=256,
                   compression=compression, predictor=predictor)  # fmt: skip
    source = default_registry().open(open_local(str(path)), Settings())
    z = source.levels - 1
    decoded = pyvips.Image.new_from_file(str(path))
    for x, y in ((0, 0), (1, 1), (2, 0), (2, 1)):  # inside, and the right and bottom edges
        w, h = min(256, 700 - 256 * x), min(256, 500 - 256 * y)
        expected = np.zeros((256, 256, bands), to_numpy(decoded.crop(0, 0, 1, 1)).dtype)
        expected[:h, :w] = to_numpy(decoded.crop(256 * x, 256 * y, w, h))
        assert np.array_equal(source.read_tile(z, x, y).array(), expected), (x, y)


def test_a_block_that_inflates_past_its_size_is_cut_there() -> None:
    size = 16 * 16 * 3
    bomb = zlib.compress(bytes(size * 1000))
    pixels = codecs.decode_block(
        bomb, compression=tiffdir.COMPRESSION_DEFLATE, predictor=1, width=16, height=16,
        bands=3, dtype=np.dtype("uint8"),
    )  # fmt: skip
    assert pixels.shape == (16, 16, 3) and not pixels.any()
