"""Deep Zoom and IIIF images over tilecast's own paths (api/protocols/boxes.py).

A box that is exactly one of tilecast's tiles is that ``zxy`` tile -- same key, same
cache entry, same hit path -- and every other box is a region rendered at exactly its
size (``RegionRequest.stretch``), named by its canonical key and rendered once however
many ask. No new worker code: both go through the miss paths tiles and regions use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from flask import current_app

from tilecast.api.handlers import regions, tiles
from tilecast.api.miss.answers import Image
from tilecast.api.parsing import parse_encoding, parse_frame, parse_style
from tilecast.api.protocols.boxes import PixelBox, aligned_tile
from tilecast.api.services import Services
from tilecast.common.grid import Grid
from tilecast.common.regionplan import RegionSpec
from tilecast.common.regions import RegionRequest
from tilecast.common.tiles import TileRequest

# Far more images than one api process serves at once; past it a memo starts afresh.
MAX_GRIDS = 10_000
GRIDS = "tilecast.protocol_grids"
T = TypeVar("T")


class MetadataMemo(Generic[T]):
    """What ``build`` makes of each image's metadata, by (source, generation): a
    generation names one description of the file, so what it says never changes, and a
    protocol tile (or zarr chunk) that hits the cache costs the same single Redis round
    trip as a ``zxy`` tile."""

    def __init__(self, build: Callable[[Mapping[str, Any]], T]) -> None:
        self._build = build
        self._values: dict[tuple[str, int], T] = {}
        self._lock = threading.Lock()

    def get(self, svc: Services, source: str) -> T:
        key = (source, svc.generations.get(source))
        value = self._values.get(key)
        if value is None:
            value = self._build(tiles.metadata(svc, source))
            with self._lock:
                if len(self._values) >= MAX_GRIDS:
                    self._values.clear()
                self._values[key] = value
        return value


def grid(svc: Services, source: str) -> Grid:
    """The tile grid of ``source``, remembered by the current app (404 when unknown)."""
    memo: MetadataMemo[Grid] = current_app.extensions.setdefault(
        GRIDS, MetadataMemo(Grid.from_metadata)
    )
    return memo.get(svc, source)


def box_image(
    svc: Services, source: str, box: PixelBox, image_grid: Grid, args: Mapping[str, str]
) -> Image:
    """``box`` of ``source`` with the ``frame``, ``style`` and encoding of ``args``."""
    frame = parse_frame(args)
    style = parse_style(args, svc.settings)
    encoding = parse_encoding(args, svc.settings)
    tile = aligned_tile(box, image_grid)
    if tile is not None:
        z, x, y = tile
        request = TileRequest(source, z, x, y, frame=frame, style=style, encoding=encoding)
        return tiles.tile(svc, request)
    region = RegionRequest(
        source=source,
        # Floats, as a worker reads the payload back: the key must come out the same.
        spec=RegionSpec(
            left=float(box.left),
            top=float(box.top),
            right=float(box.right),
            bottom=float(box.bottom),
        ),
        width=box.width,
        height=box.height,
        frame=frame,
        style=style,
        encoding=encoding,
        stretch=True,
    )
    return regions.region(svc, region)
