"""The style language at the edge: canonical JSON, hashes, validation."""

from __future__ import annotations

import json

import pytest

from common.errors import BadRequest
from common.style import NO_STYLE, canonical_style, parse_color, style_hash

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


def test_bands_lists() -> None:
    style = {
        "bands": [{"band": "red", "palette": "#f00"}, {"band": 2, "palette": ["#000", "lime"]}]
    }
    assert json.loads(canonical_style(json.dumps(style), max_bytes=MAX) or "") == style


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '"text"',
        '{"band": 0}',
        '{"band": true}',
        '{"band": "purple"}',
        '{"min": "auto"}',
        '{"palette": []}',
        '{"palette": [1, 2]}',
        '{"palette": "#12345"}',
        '{"function": "os.system"}',
        '{"bands": []}',
        '{"bands": [1]}',
        '{"bands": [{"band": 1}], "min": 3}',
        '{"bands": [{"x": [[[[[[[[1]]]]]]]]}]}',
    ],
)
def test_invalid_styles(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        canonical_style(text, max_bytes=MAX)
    assert caught.value.parameter == "style"


def test_size_bound() -> None:
    text = json.dumps({"palette": ["#000000"] * 10})
    with pytest.raises(BadRequest, match="longer than"):
        canonical_style(text, max_bytes=len(text) - 1)
    assert canonical_style(text, max_bytes=len(text)) is not None


@pytest.mark.parametrize(
    ("text", "rgba"),
    [
        ("#f00", (255, 0, 0, 255)),
        ("#ff000080", (255, 0, 0, 128)),
        ("rgb(1, 2, 3)", (1, 2, 3, 255)),
        ("rgba(1,2,3,0.5)", (1, 2, 3, 128)),
        ("White", (255, 255, 255, 255)),
        ("transparent", (0, 0, 0, 0)),
    ],
)
def test_colors(text: str, rgba: tuple[int, int, int, int]) -> None:
    assert parse_color(text) == rgba


@pytest.mark.parametrize("text", ["#12", "rgb(300,0,0)", "rgb(1,2)", "nocolour"])
def test_bad_colors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_color(text)
