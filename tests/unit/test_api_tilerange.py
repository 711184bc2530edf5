"""Which z/x/y/frame exist, by large_image's rules."""

from __future__ import annotations

import pytest

from tilecast.api.tilerange import check_frame, check_tile, frame_count
from tilecast.common.errors import BadRequest, TileOutOfRange
from tilecast.common.tiles import TileRequest

# 3000 x 2000 with 256-pixel tiles: level 4 has 12 x 8 tiles, level 0 one tile.
META = {"levels": 5, "sizeX": 3000, "sizeY": 2000, "tileWidth": 256, "tileHeight": 256}


def request(z: int, x: int, y: int, frame: int = 0) -> TileRequest:
    return TileRequest("s", z, x, y, frame)


@pytest.mark.parametrize(("z", "x", "y"), [(0, 0, 0), (4, 11, 7), (3, 5, 3), (2, 2, 1), (1, 1, 0)])
def test_tiles_inside(z: int, x: int, y: int) -> None:
    check_tile(request(z, x, y), META)


@pytest.mark.parametrize(
    ("z", "x", "y", "parameter"),
    [(5, 0, 0, "z"), (4, 12, 0, "x"), (4, 0, 8, "y"), (0, 1, 0, "x"), (3, 6, 0, "x")],
)
def test_tiles_outside(z: int, x: int, y: int, parameter: str) -> None:
    with pytest.raises(TileOutOfRange) as caught:
        check_tile(request(z, x, y), META)
    assert caught.value.parameter == parameter


def test_frames() -> None:
    assert frame_count(META) == 1
    check_frame(0, META)
    # A missing frame is a bad parameter (400), not a missing tile (404).
    with pytest.raises(BadRequest) as caught:
        check_tile(request(0, 0, 0, frame=1), META)
    assert caught.value.parameter == "frame" and not isinstance(caught.value, TileOutOfRange)
    multi = {**META, "frames": [{}, {}, {}]}
    check_frame(2, multi)
    with pytest.raises(BadRequest):
        check_frame(3, multi)
