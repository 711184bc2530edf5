"""TileJSON 3.0.0 (https://github.com/mapbox/tilejson-spec/tree/master/3.0.0) for XYZ
clients: Leaflet, OpenLayers, MapLibre.

An image is not a map, but tilecast's pyramid is an XYZ pyramid: level 0 is one
256-pixel tile holding the whole image in its top left corner, and each level doubles
it. So the convention is the one every XYZ client assumes, Web Mercator tiles: the
image is the top left ``sizeX / (256 * 2**maxzoom)`` x ``sizeY / (256 * 2**maxzoom)``
part of the world. ``bounds`` (west, south, east, north in degrees) are that part --
so a client asks no tile outside the image -- and ``center`` is the image's middle
at the zoom where its longer side first reaches 1024 pixels. A client on a pixel CRS
(Leaflet's ``CRS.Simple``, an OpenLayers pixel projection) uses the same tile URLs
and ``maxzoom``; the image's size in pixels is in the ``/item/{id}/tiles`` metadata.
"""

from __future__ import annotations

import math
from typing import Any

from tilecast.common.grid import Grid

VERSION = "3.0.0"
# The longer side, in pixels, of the view ``center`` proposes.
VIEW_SIZE = 1024
# Tile formats by tilecast encoding: the ``format`` key raster TileJSON carries.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff", "AVIF": "avif"}


def longitude(fraction: float) -> float:
    """The longitude at ``fraction`` (0 = west edge) of the Web Mercator world's width."""
    return -180.0 + 360.0 * fraction


def latitude(fraction: float) -> float:
    """The latitude at ``fraction`` (0 = north edge) of the Web Mercator world's height."""
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * fraction))))


def document(name: str, tile_url: str, grid: Grid, encoding: str) -> dict[str, Any]:
    """The TileJSON of one image whose ``zxy`` tiles are at ``tile_url``."""
    max_zoom = grid.top_level
    world = grid.tile_width * grid.scale(0)
    east, south = grid.size_x / world, grid.size_y / world
    bounds = [longitude(0.0), latitude(south), longitude(east), latitude(0.0)]
    longest = max(grid.size_x, grid.size_y)
    view_zoom = max_zoom - max(0, math.ceil(math.log2(longest / VIEW_SIZE)))
    center = [longitude(east / 2), latitude(south / 2), max(0, view_zoom)]
    return {
        "tilejson": VERSION,
        "name": name,
        "tiles": [tile_url],
        "scheme": "xyz",
        "minzoom": 0,
        "maxzoom": max_zoom,
        "bounds": bounds,
        "center": center,
        "format": FORMATS.get(encoding, encoding.lower()),
    }
