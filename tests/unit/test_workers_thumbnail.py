"""Thumbnails: large_image's sizing rules and pixels close to its getThumbnail."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.unit.conftest import register_source
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid
from tilecast.common.tiles import ThumbnailRequest
from tilecast.workers.engine import Renderer
from tilecast.workers.thumbnail import level_for_output, output_size

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)
from large_image.tilesource.utilities import _calculateWidthHeight  # noqa: E402

PNG = EncodingOptions(format="PNG")
# tests/images.py's pyramid: 3000 x 2000, 256-pixel tiles, 5 levels.
GRID = Grid(size_x=3000, size_y=2000, tile_width=256, tile_height=256, levels=5)


@pytest.mark.parametrize(
    ("width", "height", "region"),
    [
        (256, 256, (3000, 2000)),
        (256, 256, (2000, 3000)),
        (100, None, (3000, 2000)),
        (None, 100, (3000, 2000)),
        (300, 10, (3000, 2000)),
        (256, 256, (100, 50)),  # large_image upsamples
        (7, 5, (1000, 700)),
        (4096, 4096, (3000, 2000)),
    ],
)
def test_output_size_is_large_images(width: int | None, height: int | None, region) -> None:
    expected = _calculateWidthHeight(width, height, *region)[:2]
    assert output_size(width or 0, height or 0, *region) == expected


def test_default_size_and_levels() -> None:
    assert output_size(0, 0, 3000, 2000) == (256, 170)
    assert level_for_output(GRID, 256, 170) == 1  # 375 x 250 >= 256 x 170
    assert level_for_output(GRID, 3000, 2000) == 4
    assert level_for_output(GRID, 6000, 4000) == 4


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    ("name", "width", "height"),
    [("single", 256, 256), ("pyramid", 500, 0), ("png", 2048, 2048), ("lzw", 0, 90)],
)
def test_thumbnails_match_large_image(
    name: str, width: int, height: int, images: dict[str, Path], renderer: Renderer
) -> None:
    source_id = register_source(renderer, images[name])
    request = ThumbnailRequest(source_id, width, height, encoding=PNG)
    ours = _decode(renderer.render_thumbnail(request, 1))
    theirs_data, _mime = large_image.open(str(images[name]), encoding="PNG").getThumbnail(
        width=width or None, height=height or None
    )
    theirs = _decode(theirs_data)
    assert ours.shape == theirs.shape
    value = _psnr(ours, theirs)
    logging.getLogger(__name__).info("thumbnail %s %dx%d: PSNR %.1f", name, width, height, value)
    assert value >= 30


def test_styled_jpeg_thumbnail(images: dict[str, Path], renderer: Renderer) -> None:
    source_id = register_source(renderer, images["pyramid"])
    style = '{"band":1,"palette":"#f00"}'
    request = ThumbnailRequest(source_id, 128, 128, style=style)
    image = PIL.Image.open(io.BytesIO(renderer.render_thumbnail(request, 1)))
    assert image.format == "JPEG" and image.size == (128, 85)
    pixels = np.asarray(image).astype(int)
    assert pixels[:, :, 0].mean() > 100 and pixels[:, :, 1:].mean() < 10


def test_bounds(images: dict[str, Path], renderer: Renderer) -> None:
    source_id = register_source(renderer, images["png"])
    with pytest.raises(BadRequest):
        renderer.render_thumbnail(ThumbnailRequest(source_id, 100_000, 10), 1)
    with pytest.raises(BadRequest) as caught:  # a missing frame is a 400, not a 404
        renderer.render_thumbnail(ThumbnailRequest(source_id, 10, 10, frame=3), 1)
    assert caught.value.parameter == "frame"
