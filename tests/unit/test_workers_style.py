"""Styles on arrays against large_image's own ``_applyStyle`` (every key, every dtype).

large_image's ``_applyStyle`` runs on a minimal in-memory TileSource whose frames are
the arrays here and whose band statistics are given (the statistics' own parity --
which overview level, min / max, histograms -- is shown on real files in
tests/integration/test_parity_style.py and below against ``compute_stats``).

The comparison is exact (max abs difference 0): what a client receives is compared,
i.e. large_image's float output brought to 8 bits as its ``_imageToPIL`` does. Where
large_image is clearly wrong the expectation is documented and adjusted:

- an explicit ``dtype: uint8`` / ``uint16`` (or ``source`` on a uint16 image) casts
  float values that lie outside the output range (a two-colour palette starting at 0
  is not clamped by large_image); the C cast wraps them around (300 -> 44, -3.5 ->
  253). tilecast clips. Those cases compare against large_image's float result
  clipped, and the wrap is asserted to be what large_image really does.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tilecast.common.style import canonical_style
from tilecast.workers.bandstats import BandStats, compute_stats
from tilecast.workers.style import CompiledStyle, compile_style, histogram_threshold

large_image = pytest.importorskip("large_image")
pytest.importorskip("matplotlib")  # large_image resolves colormap names through it
from large_image.tilesource.base import TileSource  # noqa: E402

large_image.config.setConfig("icc_correction", False)
SIZE = 24


class ArraySource(TileSource):
    """A large_image TileSource over in-memory frames (for ``_applyStyle``)."""

    def __init__(self, frames: list[np.ndarray], style: dict[str, Any]) -> None:
        super().__init__(style=json.dumps(style), noCache=True)
        self._frames = frames
        self.tileWidth = self.tileHeight = SIZE
        for index, frame in enumerate(frames):
            self._bandRanges[index] = _their_stats(frame)

    def getTile(self, x: int, y: int, z: int, *args: Any, **kwargs: Any) -> np.ndarray:
        return self._frames[kwargs.get("frame") or 0]


def _their_stats(image: np.ndarray) -> dict[str, Any]:
    """large_image's ``histogram(onlyMinMax=False)`` record of one image (one tile)."""
    bands = image.shape[2]
    low = np.array([np.amin(image[:, :, i]) for i in range(bands)], image.dtype)
    high = np.array([np.amax(image[:, :, i]) for i in range(bands)], image.dtype)
    records = []
    for i in range(bands):
        rng = (float(low[i]), float(high[i]) + 1)
        hist, edges = np.histogram(image[:, :, i], 256, rng)
        records.append(
            {
                "min": float(low[i]),
                "max": float(high[i]),
                "hist": hist,
                "bin_edges": edges,
                "samples": int(hist.sum()),
                "density": False,
            }
        )
    return {"min": low, "max": high, "histogram": records}


def _sources() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(3)

    def frames(make: Any) -> list[np.ndarray]:
        return [make() for _ in range(3)]

    def ints(low: int, high: int, bands: int, dtype: Any) -> Any:
        return lambda: rng.integers(low, high, (SIZE, SIZE, bands), endpoint=True).astype(dtype)

    def floats(low: float, high: float, bands: int) -> Any:
        return lambda: rng.uniform(low, high, (SIZE, SIZE, bands)).astype(np.float32)

    return {
        "u8x1": frames(ints(0, 255, 1, np.uint8)),
        "u8x2": frames(ints(0, 255, 2, np.uint8)),
        "u8x3": frames(ints(0, 255, 3, np.uint8)),
        "u8x3narrow": frames(ints(10, 200, 3, np.uint8)),
        "u8x4": frames(ints(0, 255, 4, np.uint8)),
        "u8x6": frames(ints(0, 255, 6, np.uint8)),
        "u16x1": frames(ints(0, 65535, 1, np.uint16)),
        "u16x3narrow": frames(ints(1000, 5000, 3, np.uint16)),
        "i16x1": frames(ints(-1000, 3000, 1, np.int16)),
        "f32x1": frames(floats(0, 1, 1)),
        "f32x6": frames(floats(-5, 50, 6)),
    }


SOURCES = _sources()
NODATA = "NODATA"  # replaced by a value present in the source's first band
LOW, HIGH = "P25", "P75"  # replaced by the first band's quartiles

STYLES: list[dict[str, Any]] = [
    {"band": -1},
    {"band": 1, "min": 20, "max": 220, "palette": "#f00"},
    {"band": 2, "palette": ["#000", "#0f0", "#fff"]},
    {"band": 3, "min": 100, "max": 50, "palette": ["#102030", "orange", "rgb(0, 0, 255)"]},
    {"band": "red", "palette": "viridis"},
    {"band": "blue", "palette": "magma", "min": "min", "max": "max"},
    {"band": "green", "palette": "gray", "min": "full", "max": "full"},
    {"band": "gray", "palette": "#0ff", "scheme": "discrete"},
    {"palette": ["#000", "#f00", "#0f0", "#00f"], "scheme": "discrete", "min": "auto"},
    {"band": 1, "nodata": NODATA, "palette": "#fff"},
    {"band": 1, "clamp": False, "min": LOW, "max": HIGH, "palette": ["#f00", "#00f"]},
    {"band": 1, "clamp": False, "min": LOW, "max": HIGH},
    {"band": 1, "min": LOW, "max": HIGH},
    {
        "bands": [
            {"band": 1, "palette": "#f00"},
            {"band": 2, "palette": "#0f0"},
            {"band": 3, "palette": "#00f", "min": "min:0.02", "max": "max:0.05"},
        ]
    },
    {"bands": [{"band": 1, "palette": "#f00"}, {"band": "alpha"}]},
    {"bands": [{"band": 1, "palette": "#f00"}, {"band": 2, "composite": "multiply"}]},
    {
        "bands": [
            {"band": 1, "palette": "viridis", "composite": "multiply"},
            {"band": 2, "palette": "#0f0"},
        ]
    },
    {"band": 1, "dtype": "uint16", "min": "auto:0.1", "max": "auto:0.1"},
    {"band": 1, "dtype": "float", "palette": "jet"},
    {"band": 1, "dtype": "uint8", "min": LOW, "max": HIGH},
    {
        "bands": [{"band": 1, "palette": "#f00"}, {"band": 2, "palette": "#0f0"}],
        "dtype": "source",
        "axis": 1,
    },
    {"band": 1, "axis": 0, "palette": "#fff"},
    {"band": 1, "frame": 1, "palette": "#f00"},
    {
        "bands": [
            {"band": 1, "palette": "#f00"},
            {"band": 1, "framedelta": 1, "palette": "#0f0", "min": "min", "max": "max"},
            {"band": 1, "frame": 2, "palette": "#00f"},
            {"band": 1, "frame": 0, "palette": "#888"},
        ]
    },
    {"band": 7, "palette": "#fff"},
    {"band": 1, "palette": "colorbrewer.sequential.Blues_9", "min": "0.2", "max": 200},
    {"band": 1, "palette": [[1, 0, 0], [0, 0.5, 1, 0.5]]},
    {"band": 1, "palette": "xkcd:sky blue"},
    {"band": 1, "palette": ["R", "tab:orange", "#0f08"]},
    {"band": 1, "min": "min:0.02", "max": "max:0.02", "nodata": NODATA, "palette": "hot"},
    {"band": "alpha", "palette": ["#000", "#fff"], "composite": "lighten"},
    {
        "bands": [
            {"band": 1, "palette": "#f00", "clamp": False, "min": LOW, "max": HIGH},
            {"band": 2, "palette": "#0f0", "nodata": NODATA, "composite": "multiply"},
        ],
        "dtype": "float",
    },
    {"band": 2, "palette": "Greys_r", "scheme": "discrete", "min": LOW, "max": HIGH},
    {"band": 1, "palette": "twilight", "min": "max", "max": "min"},
]


def _resolve(style: Any, image: np.ndarray) -> Any:
    """The style with NODATA / P25 / P75 replaced by values of ``image``'s first band."""
    band = image[:, :, 0]
    values = {
        NODATA: band.flat[5].item(),
        LOW: float(np.percentile(band, 25)),
        HIGH: float(np.percentile(band, 75)),
    }
    if isinstance(style, dict):
        return {k: _resolve(v, image) for k, v in style.items()}
    if isinstance(style, list):
        return [_resolve(v, image) for v in style]
    return values.get(style, style) if isinstance(style, str) else style


def _strip_dtype(style: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in style.items() if k != "dtype"}
    if "bands" in out:
        out["bands"] = [{k: v for k, v in e.items() if k != "dtype"} for e in out["bands"]]
    return out


def _theirs(frames: list[np.ndarray], style: dict[str, Any], frame: int) -> np.ndarray:
    source = ArraySource(frames, style)
    return source._applyStyle(frames[frame], source.style, 0, 0, 0, frame)


def _to_client(output: np.ndarray) -> np.ndarray:
    """large_image's ``_imageToPIL`` conversion of a float result."""
    if output.dtype.kind != "f":
        return output
    return np.clip(np.nan_to_num(output, nan=0), 0, 255).astype(np.uint8)


def _ours(frames: list[np.ndarray], style: dict[str, Any], frame: int) -> np.ndarray:
    compiled = compile_style(canonical_style(json.dumps(style), max_bytes=100000))
    assert compiled is not None

    def stats(wanted: int, histogram: bool) -> BandStats:
        return compute_stats(frames[wanted], histogram)

    return compiled.apply(frames[frame], frame, lambda f: frames[f], stats)


def _expected(frames: list[np.ndarray], style: dict[str, Any], frame: int) -> np.ndarray:
    theirs = _theirs(frames, style, frame)
    if theirs.dtype in (np.uint8, np.uint16):
        # An explicit integer dtype: large_image casts; where its float result lies
        # outside the type's range the cast wraps around (the bug above). Compare to
        # the float result clipped instead, after checking that this is the case.
        floats = _theirs(frames, _strip_dtype(style), frame)
        scale = 65535 / 255 if theirs.dtype == np.uint16 else 1
        scaled = floats * scale if scale != 1 else floats
        top = np.iinfo(theirs.dtype).max
        outside = (scaled < 0) | (scaled > top)
        clipped = np.clip(scaled, 0, top).astype(theirs.dtype)
        assert np.array_equal(theirs[~outside], clipped[~outside])
        return clipped
    if theirs.dtype.kind == "f" and _wants_float(style, frames[frame]):
        return theirs
    return _to_client(theirs)


def _wants_float(style: dict[str, Any], image: np.ndarray) -> bool:
    dtype = style.get("dtype") or next(
        (e.get("dtype") for e in style.get("bands", []) if e.get("dtype")), None
    )
    return dtype == "float" or (dtype == "source" and image.dtype.kind == "f")


CASES = [(name, index) for index in range(len(STYLES)) for name in SOURCES]


@pytest.mark.parametrize(("source", "style_index"), CASES)
def test_style_matches_large_image(source: str, style_index: int) -> None:
    frames = SOURCES[source]
    style = _resolve(STYLES[style_index], frames[0])
    main = 1 if "framedelta" in json.dumps(style) else 0
    expected = _expected(frames, style, main)
    ours = _ours(frames, style, main)
    assert ours.dtype == expected.dtype, (ours.dtype, expected.dtype)
    assert ours.shape == expected.shape
    if ours.dtype.kind == "f":
        np.testing.assert_array_equal(ours, expected)
    else:
        assert np.abs(ours.astype(np.int64) - expected.astype(np.int64)).max() == 0


def test_output_dtypes() -> None:
    image = SOURCES["u16x1"][0]
    cases = {"uint16": np.uint16, "float": np.float32, "source": np.uint16, "uint8": np.uint8}
    for dtype, expected in cases.items():
        out = _ours([image], {"band": 1, "dtype": dtype}, 0)
        assert out.dtype == expected
    assert _ours([image], {"band": 1}, 0).dtype == np.uint8
    assert _ours([SOURCES["u8x3"][0]], {"band": 1, "dtype": "source"}, 0).dtype == np.uint8
    as_float = _ours([SOURCES["f32x1"][0]], {"band": 1, "dtype": "source"}, 0)
    assert as_float.dtype == np.float32 and as_float.max() <= 1.0


def test_large_image_wraps_explicit_uint8() -> None:
    """The documented bug: large_image's uint8 cast wraps values past the palette."""
    frames = SOURCES["u8x1"]
    style = {"band": 1, "min": 100, "max": 150, "dtype": "uint8"}
    theirs = _theirs(frames, style, 0)
    band = frames[0][:, :, 0]
    assert (theirs[band > 160] < 255).any()  # wrapped
    assert (_ours(frames, style, 0)[band > 160] == 255).all()  # clipped


def test_lookup_tables_are_reused() -> None:
    compiled = compile_style(canonical_style('{"band": 1, "palette": "viridis"}', max_bytes=999))
    assert isinstance(compiled, CompiledStyle)
    frames = SOURCES["u16x1"]
    stats = compute_stats(frames[0])
    first = compiled.apply(frames[0], 0, None, lambda f, h: stats)
    assert len(compiled._tables) == 1
    again = compiled.apply(frames[0], 0, None, lambda f, h: stats)
    assert len(compiled._tables) == 1 and np.array_equal(first, again)


def test_frames_and_statistics_needed() -> None:
    style = {
        "bands": [
            {"band": 1},
            {"band": 2, "framedelta": 2, "min": 0, "max": 9},
            {"band": 3, "frame": 4, "max": "max:0.1", "min": 3},
        ]
    }
    compiled = compile_style(canonical_style(json.dumps(style), max_bytes=999))
    assert compiled is not None
    assert compiled.frames(1) == [1, 3, 4]
    assert compiled.stats_frames(1) == {1: False, 4: True}
    plain = compile_style(canonical_style('{"min": 0, "max": 5}', max_bytes=99))
    assert plain is not None and not plain.needs_stats and plain.frames(2) == [2]


def test_statistics_match_large_image_histogram() -> None:
    image = SOURCES["f32x6"][0]
    theirs = _their_stats(image)
    ours = compute_stats(image, histogram=True)
    assert np.array_equal(ours.min, theirs["min"]) and np.array_equal(ours.max, theirs["max"])
    assert ours.histograms is not None
    for mine, record in zip(ours.histograms, theirs["histogram"], strict=True):
        assert np.array_equal(mine.hist, record["hist"])
        assert np.array_equal(mine.bin_edges, record["bin_edges"])
    again = BandStats.from_json(ours.to_json())
    assert again.histograms is not None
    from large_image.tilesource.utilities import histogramThreshold

    for threshold in (0.0, 0.01, 0.3, 1.0):
        for from_max in (False, True):
            mine = histogram_threshold(again.histograms[2], threshold, from_max)
            assert mine == float(histogramThreshold(theirs["histogram"][2], threshold, from_max))


def test_unknown_palette_name_is_a_bad_request() -> None:
    from tilecast.common.errors import BadRequest

    with pytest.raises(BadRequest) as caught:
        compile_style(canonical_style('{"palette": "no_such_colormap"}', max_bytes=99))
    assert caught.value.parameter == "style"


def test_shared_interpolation_is_numpys() -> None:
    from tilecast.workers.palettes import palette_colors
    from tilecast.workers.style import _Interp

    rng = np.random.default_rng(5)
    for value in ["viridis", "jet", "twilight", ["#000", "#f00", "#fff"], "tab10"]:
        palette = palette_colors(value)
        base = np.linspace(0, 1, len(palette))
        edges = [base, np.nextafter(base, 2), np.nextafter(base, -2)]
        specials = [np.nan, np.inf, -np.inf, 0, 1]
        for dtype in (np.float32, np.float64):
            x = np.concatenate([rng.uniform(-0.5, 1.5, 20000), *edges, specials]).astype(dtype)
            interp = _Interp(x, base)
            for channel in range(4):
                expected = np.interp(x, base, palette[:, channel])
                assert np.array_equal(interp(palette[:, channel]), expected, equal_nan=True)
