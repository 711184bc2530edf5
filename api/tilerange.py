"""Whether a tile or frame exists, judged from the source's metadata (large_image's rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import TileOutOfRange
from common.tiles import TileRequest


def frame_count(metadata: Mapping[str, Any]) -> int:
    return len(metadata.get("frames") or ()) or 1


def check_frame(frame: int, metadata: Mapping[str, Any]) -> None:
    count = frame_count(metadata)
    if frame >= count:
        raise TileOutOfRange(
            f"frame {frame} does not exist; the image has {count} frame(s)", parameter="frame"
        )


def check_tile(request: TileRequest, metadata: Mapping[str, Any]) -> None:
    """Raise TileOutOfRange unless z/x/y name a tile of the image."""
    levels = int(metadata["levels"])
    if request.z >= levels:
        raise TileOutOfRange(
            f"z={request.z} does not exist; levels are 0 to {levels - 1}", parameter="z"
        )
    # Level z is 2**(levels - 1 - z) times coarser than the full-resolution level.
    scale = 2 ** (levels - 1 - request.z)
    span_x = int(metadata["tileWidth"]) * scale
    span_y = int(metadata["tileHeight"]) * scale
    if request.x * span_x >= int(metadata["sizeX"]):
        raise TileOutOfRange(f"x={request.x} is outside level {request.z}", parameter="x")
    if request.y * span_y >= int(metadata["sizeY"]):
        raise TileOutOfRange(f"y={request.y} is outside level {request.z}", parameter="y")
    check_frame(request.frame, metadata)
