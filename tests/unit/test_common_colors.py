"""common/colors.py parses colours as large_image does (PIL's ImageColor + aliases)."""

from __future__ import annotations

import PIL.ImageColor
import pytest

from tilecast.common.colors import CSS_COLORS, LARGE_IMAGE_ALIASES, parse_color

large_image_utilities = pytest.importorskip("large_image.tilesource.utilities")

STRINGS = [
    "#f00", "#F00", "#f008", "#ff0000", "#FF000080", "#abcdef", "#12345", "#1234567",
    "#ggg", "rgb(1, 2, 3)", "rgb(1,2,3)", "rgb( 255 , 0 , 0 )", "rgb(300, 0, 0)",
    "rgb(1, 2)", "rgb(1.5, 2, 3)", "rgb(50%, 0%, 100%)", "rgb(50%, 0, 100%)",
    "rgb(101%, 0%, 0%)", "rgba(1, 2, 3, 4)", "rgba(255,0,0,255)", "rgba(255, 0, 0, 0.5)",
    "rgba(1,2,3)", "hsl(120, 50%, 50%)", "hsl(0, 100%, 50%)", "hsl(359.5, 12.5%, 80%)",
    "hsv(240, 100%, 100%)", "hsb(60, 50%, 50%)", "hsl(120, 50, 50)", "red", "Red", "RED",
    "R", "G", "B", "GREEN", "Green", "blue", "gray", "grey", "lightgoldenrodyellow",
    "transparent", "nocolour", "", " #f00", "#f00 ", "viridis", "rebeccapurple",
    "x" * 101, "#" + "f" * 100,
]  # fmt: skip


def _pil(text: str) -> tuple[int, ...] | None:
    try:
        value = PIL.ImageColor.getcolor(large_image_utilities.colormap.get(text, text), "RGBA")
    except ValueError:
        return None
    return value if isinstance(value, tuple) else None


@pytest.mark.parametrize("text", STRINGS)
def test_parse_color_matches_pil(text: str) -> None:
    expected = _pil(text)
    if expected is not None and max(expected) > 255:
        expected = None  # the one deliberate difference: components past 255 are refused
    try:
        ours: tuple[int, ...] | None = parse_color(text)
    except ValueError:
        ours = None
    assert ours == expected


def test_tables_match_the_packages() -> None:
    assert set(CSS_COLORS) == set(PIL.ImageColor.colormap)
    for name in CSS_COLORS:
        assert parse_color(name) == PIL.ImageColor.getcolor(name, "RGBA")
    assert large_image_utilities.colormap == LARGE_IMAGE_ALIASES
