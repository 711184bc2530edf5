"""TileJSON 3.0.0 documents (api/protocols/tilejson.py), validated against the specification's
JSON schema.

tests/data/tilejson-3.0.0.schema.json is the file ``3.0.0/schema.json`` of
https://github.com/mapbox/tilejson-spec (commit f44702e3d6f56a3f9f50e209dd5945ecb147ced0),
vendored unchanged: no package ships it. It lists ``vector_layers`` as required, while
the specification's section 3.3 says that for raster tiles "the ``vector_layers`` key is
not required": raster documents are validated with that one requirement lifted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tilecast.api.protocols import tilejson
from tilecast.common.grid import Grid

SCHEMA_FILE = Path(__file__).parents[1] / "data" / "tilejson-3.0.0.schema.json"
URL = "http://host/item/abc/tiles/zxy/{z}/{x}/{y}"


def raster_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_FILE.read_text())
    schema["required"] = [name for name in schema["required"] if name != "vector_layers"]
    return schema


def assert_valid(document: dict[str, Any]) -> None:
    jsonschema.validate(document, raster_schema())
    # What the specification says beyond the schema's types.
    assert 0 <= document["minzoom"] <= document["maxzoom"] <= 30
    west, south, east, north = document["bounds"]
    assert -180 <= west <= east <= 180 and -90 <= south <= north <= 90
    lon, lat, zoom = document["center"]
    assert west <= lon <= east and south <= lat <= north
    assert document["minzoom"] <= zoom <= document["maxzoom"] and zoom == int(zoom)
    assert all(url.startswith("http") for url in document["tiles"])


def grid(width: int, height: int, levels: int) -> Grid:
    return Grid(size_x=width, size_y=height, tile_width=256, tile_height=256, levels=levels)


def test_the_vendored_schema_is_the_specifications() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["required"] == ["tilejson", "tiles", "vector_layers"]
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize(
    ("width", "height", "levels"),
    [(3000, 2000, 5), (256, 256, 1), (1, 1, 1), (100_000, 80_000, 10), (700, 1000, 3)],
)
def test_documents_validate(width: int, height: int, levels: int) -> None:
    assert_valid(tilejson.document("slide.svs", URL, grid(width, height, levels), "JPEG"))


def test_a_document_without_required_keys_fails_the_schema() -> None:
    document = tilejson.document("slide", URL, grid(3000, 2000, 5), "JPEG")
    del document["tiles"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, raster_schema())


def test_the_image_is_the_top_left_of_the_mercator_world() -> None:
    document = tilejson.document("slide", URL, grid(3000, 2000, 5), "PNG")
    assert document["tilejson"] == "3.0.0"
    assert (document["minzoom"], document["maxzoom"]) == (0, 4)
    assert document["scheme"] == "xyz" and document["format"] == "png"
    west, south, east, north = document["bounds"]
    # Level 4 is the full resolution: the world is 256 * 2**4 = 4096 pixels wide.
    assert west == -180 and north == pytest.approx(85.0511287798066)
    assert east == pytest.approx(-180 + 360 * 3000 / 4096)
    # South is where the Web Mercator tile row at 2000 / 4096 of the height lies.
    y = (
        1 - math.log(math.tan(math.radians(south)) + 1 / math.cos(math.radians(south))) / math.pi
    ) / 2
    assert y == pytest.approx(2000 / 4096)
    assert document["center"][2] == 2  # 750 x 500 there: the longer side within 1024


def test_one_tile_image_fills_the_world() -> None:
    document = tilejson.document("tile", URL, grid(256, 256, 1), "JPEG")
    assert document["bounds"] == pytest.approx([-180, -85.0511287798066, 180, 85.0511287798066])
    assert document["center"] == pytest.approx([0, 0, 0])
