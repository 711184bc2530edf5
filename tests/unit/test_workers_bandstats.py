"""Band statistics: one computation per (source, generation, frame), shared via Redis;
styles reading other frames; frames a style names that the source lacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.unit.conftest import register_source
from tilecast.common.bandstats import HISTOGRAM, MINMAX, band_stats_key
from tilecast.common.errors import BadRequest
from tilecast.common.settings import Settings
from tilecast.common.style import canonical_style
from tilecast.common.tiles import ThumbnailRequest, TileRequest
from tilecast.workers.bandstats import overview_stats
from tilecast.workers.engine import Renderer

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)


def _style(style: dict) -> str | None:
    return canonical_style(json.dumps(style), max_bytes=10000)


def test_key_shape() -> None:
    key = band_stats_key("src", 3, 2, MINMAX)
    assert key == "tc:bandstats:src:3:2:overview:1024:0:minmax:json"
    assert band_stats_key("src", 4, 2, HISTOGRAM) != key
    with pytest.raises(ValueError):
        band_stats_key("src", 3, 2, "other")


def test_statistics_are_shared_between_processes(
    renderer: Renderer, wk_settings: Settings, wk_images: dict[str, Path]
) -> None:
    source_id = register_source(renderer, wk_images["uint16"])
    request = TileRequest(source_id, 1, 0, 0, style=_style({"palette": "viridis"}))
    renderer.render_tile(request, 1)
    renderer.render_tile(TileRequest(source_id, 1, 1, 0, style=request.style), 1)
    assert renderer.band_stats.computed == 1  # once, not per tile
    other = Renderer(wk_settings)  # another worker process
    try:
        other.render_tile(TileRequest(source_id, 2, 0, 1, style=request.style), 1)
        assert other.band_stats.computed == 0  # read from Redis
        # A threshold needs histograms: a second kind, computed once.
        thresholds = _style({"min": "min:0.05", "max": "max:0.05"})
        other.render_tile(TileRequest(source_id, 1, 0, 0, style=thresholds), 1)
        assert other.band_stats.computed == 1
        # A new generation recomputes.
        other.render_tile(TileRequest(source_id, 1, 0, 0, style=request.style), 2)
        assert other.band_stats.computed == 2
    finally:
        other.close()
    assert renderer.cache.exists(band_stats_key(source_id, 1, 0, MINMAX))


def test_statistics_match_large_images_scan(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    """The overview level and its numbers are large_image's ``_scanForMinMax``'s."""
    for name in ("uint16", "odd_lzw", "gray"):
        source_id = register_source(renderer, wk_images[name])
        source = renderer.open(source_id, 1)
        stats = overview_stats(renderer.raw_tiles(source, source_id, 1), 0)
        reference = large_image.open(str(wk_images[name]))
        reference._scanForMinMax(reference.dtype, 0)
        ranges = reference._bandRanges[0]
        assert stats.min.tolist() == ranges["min"].tolist()
        assert stats.max.tolist() == ranges["max"].tolist()


def test_style_frames_out_of_range(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    source_id = register_source(renderer, wk_images["frames"])
    ok = _style({"bands": [{"palette": "#f00"}, {"framedelta": 1, "palette": "#0f0"}]})
    assert renderer.render_tile(TileRequest(source_id, 0, 0, 0, style=ok), 1)
    for style, frame in [
        ({"band": 1, "frame": 2}, 0),
        ({"band": 1, "framedelta": 1}, 1),
        ({"band": 1, "framedelta": -1}, 0),
    ]:
        request = TileRequest(source_id, 0, 0, 0, frame=frame, style=_style(style))
        with pytest.raises(BadRequest) as caught:
            renderer.render_tile(request, 1)
        assert caught.value.parameter == "style"


def test_thumbnail_styles_read_other_frames(renderer: Renderer, wk_images: dict[str, Path]) -> None:
    source_id = register_source(renderer, wk_images["frames"])
    style = _style({"band": 1, "frame": 1, "palette": "#fff", "min": 0, "max": 255})
    data = renderer.render_thumbnail(ThumbnailRequest(source_id, 64, 64, style=style), 1)
    plain = renderer.render_thumbnail(ThumbnailRequest(source_id, 64, 64), 1)
    assert data and plain and data != plain
    import io

    import PIL.Image

    styled = np.asarray(PIL.Image.open(io.BytesIO(data)))
    unstyled = np.asarray(PIL.Image.open(io.BytesIO(plain)))
    # Frame 1 is frame 0 inverted: its first band, shown grey, mirrors frame 0's.
    assert abs(int(styled[..., 0].mean()) + int(unstyled[..., 0].mean()) - 255) <= 3
