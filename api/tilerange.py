"""Whether a tile or frame exists, judged from the source's metadata (large_image's rules).

A tile outside the image is a 404 (``TileOutOfRange``), as in large_image; a frame the
image lacks is a bad parameter, a 400 naming ``frame``, wherever the frame was given
(the ``frame`` query parameter or the ``fzxy`` path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tilecast.common.errors import BadRequest, TileOutOfRange
from tilecast.common.grid import Grid
from tilecast.common.style import style_frames
from tilecast.common.tiles import TileRequest


def frame_count(metadata: Mapping[str, Any]) -> int:
    return len(metadata.get("frames") or ()) or 1


def check_frame(frame: int, metadata: Mapping[str, Any]) -> None:
    count = frame_count(metadata)
    if not 0 <= frame < count:
        raise BadRequest(
            f"frame {frame} does not exist; the image has {count} frame(s)", parameter="frame"
        )


def check_style_frames(style: str | None, frame: int, metadata: Mapping[str, Any]) -> None:
    """A style reading a frame the image lacks is a 400 naming ``style`` (as a worker
    answers for each tile it would render with it)."""
    count = frame_count(metadata)
    missing = sorted(f for f in style_frames(style, frame) if not 0 <= f < count)
    if missing:
        raise BadRequest(
            f"style reads frame {missing[0]}, which does not exist (0 to {count - 1})",
            parameter="style",
        )


def path_frame(raw: str) -> int:
    """The ``{frame}`` segment of an ``fzxy`` path: a non-negative integer, else a 400."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise BadRequest(f"frame must be a non-negative integer, not {raw!r}", parameter="frame")
    return int(raw)


def check_tile(request: TileRequest, metadata: Mapping[str, Any]) -> None:
    """Raise TileOutOfRange unless z/x/y name a tile of the image."""
    grid = Grid.from_metadata(metadata)
    if request.z >= grid.levels:
        raise TileOutOfRange(
            f"z={request.z} does not exist; levels are 0 to {grid.top_level}", parameter="z"
        )
    across, down = grid.tiles_at(request.z)
    if request.x >= across:
        raise TileOutOfRange(f"x={request.x} is outside level {request.z}", parameter="x")
    if request.y >= down:
        raise TileOutOfRange(f"y={request.y} is outside level {request.z}", parameter="y")
    check_frame(request.frame, metadata)
