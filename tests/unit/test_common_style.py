"""The style language at the edge: canonical JSON, hashes, validation (no numpy)."""

from __future__ import annotations

import json

import pytest

from tilecast.common.errors import BadRequest
from tilecast.common.style import NO_STYLE, canonical_style, style_frames, style_hash

MAX = 16 * 1024


def test_no_style_forms() -> None:
    for text in [None, "", "  ", "{}", "null"]:
        assert canonical_style(text, max_bytes=MAX) is None
    assert style_hash(None) == NO_STYLE


def test_equivalent_styles_share_canonical_form_and_hash() -> None:
    a = canonical_style('{"min": 0, "max": 255, "band": 1}', max_bytes=MAX)
    b = canonical_style('{ "band":1,"max":255, "min":0 }', max_bytes=MAX)
    assert a == b == '{"band":1,"max":255,"min":0}'
    assert style_hash(a) == style_hash(b) != NO_STYLE
    assert len(style_hash(a)) == 16


VALID = [
    {"band": "red", "palette": "#f00"},
    {"band": 2, "palette": ["#000", "lime"]},
    {"band": -1, "min": "auto", "max": "full"},
    {"band": "gray", "min": "min", "max": "max"},
    {"band": "alpha", "min": "min:0.02", "max": "max:0.5", "palette": "viridis"},
    {"min": "auto:0.1", "max": "300", "palette": "magma_r"},
    {"min": -5.5, "max": 1e6, "palette": "colorbrewer.sequential.Blues_9"},
    {"palette": "xkcd:robin's egg blue"},
    {"palette": ["rgba(255, 0, 0, 128)", "hsl(120, 50%, 50%)", [0.5, 0.5, 1], [1, 0, 0, 0.5]]},
    {"palette": "tab:blue", "scheme": "discrete", "nodata": 0, "clamp": False},
    {"palette": "gray", "scheme": "linear", "nodata": "12.5", "composite": "multiply"},
    {"band": 1, "frame": 3, "dtype": "uint16", "axis": 0},
    {"band": 1, "framedelta": -1, "dtype": "source"},
    {"band": 1, "nodata": None, "frame": None, "framedelta": 0},
    {
        "bands": [
            {"band": 1, "palette": "#f00", "frame": 0},
            {"band": 2, "palette": "#0f0", "framedelta": 2, "composite": "lighten"},
            {"band": "alpha", "dtype": "float"},
        ],
        "dtype": "float",
        "axis": 1,
    },
]


@pytest.mark.parametrize("style", VALID, ids=[json.dumps(s) for s in VALID])
def test_valid_styles_round_trip(style: dict) -> None:
    canonical = canonical_style(json.dumps(style), max_bytes=MAX)
    assert canonical is not None and json.loads(canonical) == style


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '"text"',
        '{"band": 0}',
        '{"band": true}',
        '{"band": 1.5}',
        '{"band": "purple"}',
        '{"band": "Red"}',
        '{"min": "lowest"}',
        '{"min": null}',
        '{"min": true}',
        '{"max": "min:2"}',
        '{"max": "full:0.1"}',
        '{"max": NaN}',
        '{"max": Infinity}',
        '{"palette": []}',
        '{"palette": [1, 2]}',
        '{"palette": [[1, 2, 3]]}',
        '{"palette": [[0.1, 0.2]]}',
        '{"palette": "#12345"}',
        '{"palette": "rgb(300, 0, 0)"}',
        '{"palette": "rgba(255, 0, 0, 0.5)"}',
        '{"palette": "__class__"}',
        '{"palette": "viridis.__dict__"}',
        '{"palette": "<script>"}',
        '{"palette": "notacolour"}',
        '{"palette": "viridiss"}',
        '{"palette": ["#fff", "nosuchcolour"]}',
        '{"palette": 5}',
        '{"palette": {"a": 1}}',
        '{"scheme": "log"}',
        '{"composite": "screen"}',
        '{"clamp": "yes"}',
        '{"dtype": "int32"}',
        '{"axis": "1"}',
        '{"frame": -1}',
        '{"frame": "2"}',
        '{"framedelta": 0.5}',
        '{"nodata": "none"}',
        '{"function": "os.system"}',
        '{"icc": false}',
        '{"bands": []}',
        '{"bands": {}}',
        '{"bands": [1]}',
        '{"bands": [{"band": 1}], "min": 3}',
        '{"bands": [{"band": 1, "bands": []}]}',
        '{"bands": [{"x": [[[[[[[[1]]]]]]]]}]}',
        '{"palette": [[[[[[[["#fff"]]]]]]]]}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_invalid_styles(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        canonical_style(text, max_bytes=MAX)
    assert caught.value.parameter == "style"


def test_too_many_bands_entries() -> None:
    text = json.dumps({"bands": [{"band": 1}] * 65})
    with pytest.raises(BadRequest) as caught:
        canonical_style(text, max_bytes=MAX)
    assert caught.value.parameter == "style"


def test_size_bound() -> None:
    text = json.dumps({"palette": ["#000000"] * 10})
    with pytest.raises(BadRequest, match="longer than") as caught:
        canonical_style(text, max_bytes=len(text) - 1)
    assert caught.value.parameter == "style"
    assert canonical_style(text, max_bytes=len(text)) is not None


def test_style_frames() -> None:
    style = {"bands": [{"band": 1}, {"framedelta": 2}, {"frame": 7}, {"framedelta": 0}]}
    canonical = canonical_style(json.dumps(style), max_bytes=MAX)
    assert style_frames(canonical, 1) == {1, 3, 7}
    assert style_frames(None, 4) == {4}
