"""``fill``: large_image's letterboxing colour for thumbnails and regions.

large_image pads an output to exactly ``width`` x ``height`` (centred; top left with
``corner:<colour>``) when both are given and ``fill`` is a colour, not ``none``. The
colour is read as PIL reads it after large_image's aliases (common/colors.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from tilecast.common.colors import RGBA, parse_color
from tilecast.common.errors import BadRequest
from tilecast.common.params import Param

CORNER = "corner:"
FILL = Param(
    "fill",
    "letterbox colour when both width and height are given (corner:colour: top left), or none",
    default="none",
)


def parse_fill(args: Mapping[str, str], width: int | None, height: int | None) -> str | None:
    """``fill``, canonical (``#rrggbbaa``, after ``corner:`` when asked), or None when
    it would change nothing (no colour, or not both ``width`` and ``height``)."""
    raw = args.get(FILL.name) or ""
    if not raw or raw.lower() == "none" or not (width and height):
        return None
    corner = raw.lower().startswith(CORNER)
    text = raw.split(":", 1)[1] if corner else raw
    try:
        red, green, blue, alpha = parse_color(text)
    except ValueError:
        raise BadRequest(
            f"fill must be a colour or none, not {raw!r}", parameter=FILL.name
        ) from None
    return f"{CORNER if corner else ''}#{red:02x}{green:02x}{blue:02x}{alpha:02x}"


def fill_color(fill: str) -> tuple[RGBA, bool]:
    """The colour of a canonical ``fill`` and whether the image goes top left."""
    corner = fill.startswith(CORNER)
    return parse_color(fill.removeprefix(CORNER)), corner


def fill_key_part(fill: str | None) -> str:
    # Keys are colon separated: the canonical corner: prefix is spelled without one.
    return "" if fill is None else ";f" + fill.replace(CORNER, "c")
