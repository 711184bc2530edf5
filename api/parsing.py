"""Request parsing at the edge: path and query in, ``TileRequest``/``ThumbnailRequest`` out.

Every parameter is validated and bounded here, before any Redis or worker sees it, and a
bad one is a :class:`~common.errors.BadRequest` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest, TileOutOfRange
from tilecast.common.fill import parse_fill
from tilecast.common.query import (
    DEFAULT_THUMBNAIL_SIZE,
    FRAME,
    STYLE,
    THUMBNAIL_HEIGHT,
    THUMBNAIL_WIDTH,
)
from tilecast.common.settings import Settings
from tilecast.common.style import canonical_style
from tilecast.common.tiles import ThumbnailRequest, TileRequest

# ASCII digits only (and at most 12): int() would also take " 3", "1_0" and non-ASCII
# digits, which are not tile coordinates (and would name the same tile under several URLs).
_MAX_DIGITS = 12
_MAX_COORDINATE = 2**31 - 1


def parse_tile_request(
    source: str, z: str, x: str, y: str, args: Mapping[str, str], settings: Settings
) -> TileRequest:
    if not args:
        # Most viewers ask plain tiles: the hit path skips parsing absent parameters.
        return TileRequest(
            source=source,
            z=path_coordinate(z, "z"),
            x=path_coordinate(x, "x"),
            y=path_coordinate(y, "y"),
            encoding=parse_encoding(args, settings),
        )
    return TileRequest(
        source=source,
        z=path_coordinate(z, "z"),
        x=path_coordinate(x, "x"),
        y=path_coordinate(y, "y"),
        frame=parse_frame(args),
        style=parse_style(args, settings),
        encoding=parse_encoding(args, settings),
    )


def parse_thumbnail_request(
    source: str, args: Mapping[str, str], settings: Settings
) -> ThumbnailRequest:
    width, height = parse_thumbnail_size(args, settings)
    if width * height > settings.max_region_pixels:
        # A filled thumbnail is exactly width x height: the region bound applies too.
        raise BadRequest(
            f"a {width} x {height} thumbnail is more than the {settings.max_region_pixels} "
            "pixels this server renders at once (TILECAST_MAX_REGION_PIXELS)",
            parameter=THUMBNAIL_WIDTH.name,
        )
    return ThumbnailRequest(
        source=source,
        width=width,
        height=height,
        frame=parse_frame(args),
        style=parse_style(args, settings),
        encoding=parse_encoding(args, settings),
        fill=parse_fill(args, width, height),
    )


def path_coordinate(raw: str, name: str) -> int:
    """A z, x or y path segment: not an integer is a 400; negative or huge is off the image."""
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_DIGITS):
        raise BadRequest(f"{name} must be an integer, not {raw!r}", parameter=name)
    value = int(raw)
    if not 0 <= value <= _MAX_COORDINATE:
        raise TileOutOfRange(f"{name}={value} is outside the image", parameter=name)
    return value


def parse_frame(args: Mapping[str, str]) -> int:
    frame = FRAME.integer(args)
    assert frame is not None
    return frame


def parse_style(args: Mapping[str, str], settings: Settings) -> str | None:
    return canonical_style(args.get(STYLE.name), max_bytes=STYLE.high_in(settings))


def parse_encoding(args: Mapping[str, str], settings: Settings) -> EncodingOptions:
    return EncodingOptions.from_query(args, default_quality=settings.jpeg_quality)


def parse_thumbnail_size(args: Mapping[str, str], settings: Settings) -> tuple[int, int]:
    """``(width, height)`` with 0 for an unconstrained side; large_image's 256 x 256 default."""
    width = THUMBNAIL_WIDTH.integer(args, settings)
    height = THUMBNAIL_HEIGHT.integer(args, settings)
    if width is None and height is None:
        return DEFAULT_THUMBNAIL_SIZE, DEFAULT_THUMBNAIL_SIZE
    return width or 0, height or 0


def parse_source_body(body: Any) -> str:
    """The ``path`` of a ``POST /sources`` JSON body."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object like {"path": "..."}', parameter="path")
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise BadRequest("path must be a non-empty string", parameter="path")
    return path
