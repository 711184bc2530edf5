"""Styles: pixels against large_image's own styling of the same tiles (PNG output)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import pyvips

from common.encoding import EncodingOptions
from common.settings import Settings
from common.style import canonical_style
from workers.encode import encode_pixels, to_uint8
from workers.sources import open_source
from workers.style import BandRanges, band_ranges, compile_style
from workers.vipsutil import to_numpy

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)

RGB_STYLES = [
    {"band": 1, "min": 20, "max": 220, "palette": "#f00"},
    {"band": 2, "palette": ["#000", "#0f0", "#fff"]},
    {"band": 3, "min": 100, "max": 50, "palette": ["#102030", "orange", "rgb(0, 0, 255)"]},
    {
        "bands": [
            {"band": 1, "palette": "#f00"},
            {"band": 2, "palette": "#0f0"},
            {"band": 3, "palette": "#00f", "min": 40, "max": 250},
        ]
    },
    {"band": "red", "min": 50, "max": 200},
    {"band": "blue", "palette": ["#00f", "#ff0"]},
    {"band": -1},
    {"band": "gray", "palette": "#0ff"},
    {"band": 7, "palette": "#fff"},
    {"min": 0, "max": 255},
]


def _theirs(path: Path, style: dict, x: int, y: int, z: int) -> np.ndarray:
    source = large_image.open(str(path), style=json.dumps(style), encoding="PNG")
    return np.asarray(PIL.Image.open(io.BytesIO(source.getTile(x, y, z))))


def _ours(path: Path, style: dict, x: int, y: int, z: int) -> np.ndarray:
    compiled = compile_style(canonical_style(json.dumps(style), max_bytes=10000))
    assert compiled is not None
    with open_source(str(path), Settings()) as source:
        pixels = source.read_tile(z, x, y).array()
        ranges = None
        if compiled.needs_ranges:  # small images: the overview is the whole image
            ranges = band_ranges(to_numpy(pyvips.Image.new_from_file(str(path))))
        out = compiled.apply(pixels, ranges)
    data = encode_pixels(to_uint8(out), EncodingOptions("PNG"))
    return np.asarray(PIL.Image.open(io.BytesIO(data)))


def _same(ours: np.ndarray, theirs: np.ndarray, content: tuple[int, int] = (256, 256)) -> None:
    """Equal within 1 over the tile's content; beyond it large_image shows the file's
    padding (libvips pads non-JPEG tiles by repeating the edge) where tilecast has zeros."""
    assert ours.shape == theirs.shape
    w, h = content
    assert np.abs(ours[:h, :w].astype(int) - theirs[:h, :w].astype(int)).max() <= 1


@pytest.mark.parametrize("style", RGB_STYLES, ids=[json.dumps(s) for s in RGB_STYLES])
def test_rgb_styles_match_large_image(style: dict, images: dict[str, Path]) -> None:
    path = images["pyramid"]
    for x, y, z in [(1, 1, 4), (0, 0, 1)]:
        _same(_ours(path, style, x, y, z), _theirs(path, style, x, y, z))


@pytest.mark.parametrize(
    "style",
    [{"min": 10, "max": 240}, {"palette": ["#000", "#f80"]}, {"palette": "#fff", "min": 30}],
)
def test_single_band_styles_match_large_image(style: dict, wk_images: dict[str, Path]) -> None:
    ours = _ours(wk_images["gray"], style, 1, 0, 2)
    _same(ours, _theirs(wk_images["gray"], style, 1, 0, 2), (344, 256))
    if "palette" not in style:
        assert ours.ndim == 2  # one grey channel, like large_image


@pytest.mark.parametrize(
    "style",
    [
        {"min": 1000, "max": 40000, "palette": ["#000", "#f80"]},
        {"palette": "#0f0"},  # auto: the band's range over the overview
    ],
)
def test_uint16_styles_match_large_image(style: dict, wk_images: dict[str, Path]) -> None:
    ours = _ours(wk_images["uint16"], style, 0, 0, 2)
    _same(ours, _theirs(wk_images["uint16"], style, 0, 0, 2))


@pytest.mark.parametrize(
    "style",
    [
        {"bands": [{"band": 1, "palette": "#f00"}, {"band": "alpha"}]},
        {"bands": [{"band": 2, "palette": "#0f0"}, {"band": 4, "palette": "#00f"}]},
    ],
)
def test_rgba_styles_match_large_image(style: dict, wk_images: dict[str, Path]) -> None:
    ours = _ours(wk_images["rgba"], style, 1, 1, 2)
    _same(ours, _theirs(wk_images["rgba"], style, 1, 1, 2), (600 - 256, 400 - 256))


def test_auto_range_rules() -> None:
    compiled = compile_style(canonical_style('{"palette": "#fff"}', max_bytes=100))
    assert compiled is not None and compiled.needs_ranges
    image = np.array([[[1000], [3000]]], np.uint16)
    out = compiled.apply(image, BandRanges(np.array([1000]), np.array([3000])))
    assert out[0, :, 0].tolist() == [0, 255]
    # Without statistics large_image falls back to the dtype's full range.
    assert compiled.apply(image, None)[0, 1, 0] == pytest.approx(3000 / 65535 * 255, rel=1e-5)
    fixed = compile_style(canonical_style('{"min": 0, "max": 10}', max_bytes=100))
    assert fixed is not None and not fixed.needs_ranges
