"""Styled tiles through tilecast's HTTP API against large_image's ``getTile``.

Each case is (file, style, frame, encoding, tile); both sides decode to 8 bits
(a 16-bit PNG or a TIFF of another dtype is brought to 8 bits as large_image's
``_imageToPIL`` brings its own style output, which it always encodes as 8 bits) and
are compared over the tile's content (beyond it large_image shows the file's own
tile padding). Lossless encodings: max abs difference <= 1; JPEG: PSNR >= 40 dB.
Tiles are taken from levels stored in the files: synthesized levels (resampled by
tilecast's libvips lanczos3 and large_image's PIL LANCZOS) differ by a few levels
before any style, which is the synthesis parity's business (tests/integration/
test_tiles.py), not the style's.

Files: tests/images_frames.py (engineer A's fixtures): uint8 1/2/3/4/6 bands with and
without alpha, uint16 1 and 3 bands, int16, float32, a 3-page TIFF and a 12-frame
OME-TIFF (channels x z x t).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
import tifffile

from tests.conftest import ApiServer
from tests.images_frames import distinct_values

pytestmark = pytest.mark.integration
large_image = pytest.importorskip("large_image")
pytest.importorskip("matplotlib")  # large_image resolves colormap names through it
large_image.config.setConfig("icc_correction", False)

RGB = [{"band": b, "palette": c} for b, c in ((1, "#f00"), (2, "#0f0"), (3, "#00f"))]

# (file, style, frame, encoding, (z, x, y)); z None = the full-resolution level.
CASES: list[tuple[str, dict[str, Any], int, str, tuple[int | None, int, int]]] = [
    ("bands3", {"band": 1, "min": 20, "max": 220, "palette": "#f00"}, 0, "PNG", (None, 1, 1)),
    ("bands3", {"band": "red", "palette": "viridis"}, 0, "PNG", (None, 0, 0)),
    ("bands3", {"band": "blue", "palette": "magma", "min": "min", "max": "max"}, 0, "PNG",
     (None, 2, 1)),
    ("bands3", {"band": "green", "palette": ["#000", "#0f0", "#fff"], "scheme": "discrete"}, 0,
     "PNG", (None, 1, 0)),
    ("bands3", {"band": "gray", "palette": "gray", "min": "full", "max": "full"}, 0, "JPEG",
     (None, 1, 1)),
    ("bands3", {"bands": [*RGB[:2], {**RGB[2], "min": "min:0.02", "max": "max:0.02"}]}, 0,
     "PNG", (None, 0, 1)),
    ("bands3", {"band": 2, "palette": "colorbrewer.sequential.Blues_9"}, 0, "TIFF", (None, 0, 0)),
    ("bands3", {"bands": [{"band": 1, "palette": "#f00"},
                          {"band": 2, "palette": "#ff0", "composite": "multiply"}]}, 0,
     "JPEG", (None, 0, 0)),
    ("bands3", {"bands": RGB, "dtype": "uint16", "axis": 2}, 0, "PNG", (None, 1, 1)),
    ("bands4_alpha", {"bands": [{"band": 1, "palette": "#f00"}, {"band": "alpha"}]}, 0, "PNG",
     (None, 0, 1)),
    ("bands4_alpha", {"bands": [{"band": 2, "palette": "#0ff"},
                                {"band": 4, "palette": "#fff", "composite": "multiply"}]}, 0,
     "PNG", (None, 0, 0)),
    ("bands2_alpha", {"band": 1, "palette": ["#00f", "#ff0"], "nodata": 0, "clamp": False,
                      "min": 40, "max": 200}, 0, "PNG", (None, 1, 1)),
    ("bands1", {"band": 1, "min": 50, "max": 200, "clamp": False, "palette": ["#f00", "#00f"]},
     0, "PNG", (None, 1, 0)),
    ("bands1", {"min": 10, "max": 240}, 0, "PNG", (None, 0, 0)),
    ("bands6", {"band": 5, "palette": "cubehelix"}, 0, "PNG", (None, 1, 1)),
    ("bands6", {"bands": [{"band": 4, "palette": "#f00"}, {"band": 5, "palette": "#0f0"},
                          {"band": 6, "palette": "#00f"}]}, 0, "PNG", (None, 0, 0)),
    ("uint16", {"palette": "viridis"}, 0, "PNG", (None, 1, 1)),
    ("uint16", {"min": "min", "max": "max", "palette": ["#000", "#f80"], "dtype": "uint16"}, 0,
     "PNG", (None, 0, 0)),
    ("uint16", {"band": 1, "min": "auto:0.05", "max": "auto:0.05"}, 0, "PNG", (None, 2, 0)),
    ("uint16_rgb", {"bands": RGB, "dtype": "source"}, 0, "PNG", (None, 1, 0)),
    ("uint16_rgb", {"band": "red", "min": "full", "max": "full", "axis": 0}, 0, "PNG",
     (None, 0, 1)),
    ("int16", {"palette": "RdBu_r", "min": -20000, "max": 20000}, 0, "PNG", (None, 1, 1)),
    ("int16", {"min": "min", "max": "max", "nodata": 0}, 0, "PNG", (None, 0, 0)),
    ("float32", {"palette": "jet"}, 0, "PNG", (None, 1, 0)),
    ("float32", {"min": -25, "max": 325, "palette": ["#000", "#0ff"]}, 0, "TIFF", (None, 0, 1)),
    ("float32", {"min": "min", "max": "max", "scheme": "discrete",
                 "palette": ["#000", "#f00", "#0f0", "#00f", "#fff"]}, 0, "PNG", (None, 2, 1)),
    ("multipage", {"band": 1, "frame": 2, "palette": "#f00"}, 0, "PNG", (None, 1, 1)),
    ("multipage", {"bands": [{"band": 1, "palette": "#f00"},
                             {"band": 1, "framedelta": 1, "palette": "#0f0"},
                             {"band": 1, "frame": 0, "palette": "#00f"}]}, 1, "PNG",
     (None, 0, 0)),
    ("ome", {"bands": [{"frame": 0, "palette": "#00f"}, {"frame": 1, "palette": "#0f0"},
                       {"frame": 2, "palette": "#f00"}]}, 0, "PNG", (None, 1, 1)),
    ("ome", {"band": 1, "framedelta": 1, "palette": "magma", "min": "min:0.01",
             "max": "max:0.01"}, 3, "PNG", (None, 0, 0)),
    ("ome", {"palette": "xkcd:sky blue", "dtype": "uint16"}, 5, "TIFF", (None, 2, 0)),
    ("ome", {"bands": [{"palette": "#f0f"}, {"framedelta": 6, "palette": "#0f0"}]}, 4, "JPEG",
     (None, 1, 0)),
]  # fmt: skip


def _decode(data: bytes) -> np.ndarray:
    """(h, w, bands) 8-bit pixels of an encoded tile, large_image's way to 8 bits."""
    image = pyvips.Image.new_from_buffer(data, "")
    array = np.ndarray(
        buffer=image.write_to_memory(),
        dtype={"uchar": np.uint8, "ushort": np.uint16, "float": np.float32}[image.format],
        shape=(image.height, image.width, image.bands),
    )
    # Float styles hold [0, 1]: 8 bits would flatten them to 0 and 1 and hide any
    # difference (test_float_style_keeps_float_values_in_a_tiff compares them as floats).
    assert array.dtype.kind != "f", "a float answer: compare its values, not 8 bits"
    if array.dtype == np.uint16:
        return (array // 256).astype(np.uint8)
    return array


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _case_id(case: tuple[Any, ...]) -> str:
    name, style, frame, encoding, _tile = case
    return f"{name}-f{frame}-{encoding}-{json.dumps(style, separators=(',', ':'))}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_styled_tile_matches_large_image(
    case: tuple[Any, ...],
    api: ApiServer,
    frame_images: dict[str, Path],
    frame_sources: dict[str, str],
) -> None:
    name, style, frame, encoding, (z, x, y) = case
    reference = large_image.open(
        str(frame_images[name]), style=json.dumps(style), encoding=encoding
    )
    z = reference.levels - 1 if z is None else z
    theirs = _decode(reference.getTile(x, y, z, frame=frame))
    response = api.get(
        f"/item/{frame_sources[name]}/tiles/zxy/{z}/{x}/{y}",
        params={"style": json.dumps(style), "encoding": encoding, "frame": str(frame)},
    )
    assert response.status_code == 200, response.text
    ours = _decode(response.content)
    assert ours.shape == theirs.shape
    scale = 2 ** (reference.levels - 1 - z)
    width = min(reference.tileWidth, -(-reference.sizeX // scale) - x * reference.tileWidth)
    height = min(reference.tileHeight, -(-reference.sizeY // scale) - y * reference.tileHeight)
    ours, theirs = ours[:height, :width], theirs[:height, :width]
    # Fewer is a blank (or flattened) reference that any answer would match; a discrete
    # palette shows at most its few colours.
    assert distinct_values(theirs) >= (3 if style.get("scheme") == "discrete" else 16)
    if encoding == "JPEG":
        assert _psnr(ours, theirs) >= 40
    else:
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("name", "style"),
    [
        ("float32", {"min": 0, "max": 255, "dtype": "float"}),
        ("bands3", {"bands": RGB, "dtype": "float", "axis": 2}),
    ],
)
def test_float_style_keeps_float_values_in_a_tiff(
    api: ApiServer,
    frame_images: dict[str, Path],
    frame_sources: dict[str, str],
    name: str,
    style: dict[str, Any],
) -> None:
    """``dtype: float`` makes values in [0, 1]: tilecast's TIFF keeps them as floats;
    large_image's encoded answer brings them to 8 bits (0 or 1), so the reference is
    its style output before encoding. Tile (0, 1) of the full-resolution level."""
    reference = large_image.open(str(frame_images[name]), style=json.dumps(style))
    z = reference.levels - 1
    theirs = np.asarray(reference.getTile(0, 1, z, numpyAllowed="always"))
    response = api.get(
        f"/item/{frame_sources[name]}/tiles/zxy/{z}/0/1",
        params={"style": json.dumps(style), "encoding": "TIFF"},
    )
    assert response.status_code == 200, response.text
    ours = tifffile.imread(io.BytesIO(response.content))
    ours = ours[:, :, np.newaxis] if ours.ndim == 2 else ours
    assert ours.dtype == theirs.dtype == np.float32
    height = reference.sizeY - reference.tileHeight  # the content of tile row 1
    ours, theirs = ours[:height], theirs[:height]
    assert distinct_values(theirs) > 100 and theirs.max() - theirs.min() > 0.25
    assert np.allclose(ours, theirs, atol=1e-6)


def test_large_image_wraps_uint16_past_max(
    api: ApiServer, frame_images: dict[str, Path], frame_sources: dict[str, str]
) -> None:
    """A documented large_image bug, not copied: with ``dtype: uint16`` and values past
    ``max`` under a two-colour palette starting at black, large_image does not clamp
    (``band * colour``) and casts e.g. 1.3 * 65535 to uint16, which wraps around to
    dark values. tilecast clips to 65535: the expectation is large_image's float result
    (no dtype) brought to 8 bits, and large_image's own answer is shown to wrap."""
    style = {"min": 1000, "max": 40000, "palette": ["#000", "#f80"], "dtype": "uint16"}
    path = str(frame_images["uint16"])
    plain = {k: v for k, v in style.items() if k != "dtype"}
    reference = large_image.open(path, style=json.dumps(plain), encoding="PNG")
    z = reference.levels - 1
    expected = _decode(reference.getTile(0, 0, z))
    wrapped = _decode(
        large_image.open(path, style=json.dumps(style), encoding="PNG").getTile(0, 0, z)
    )
    response = api.get(
        f"/item/{frame_sources['uint16']}/tiles/zxy/{z}/0/0",
        params={"style": json.dumps(style), "encoding": "PNG"},
    )
    assert response.status_code == 200, response.text
    ours = _decode(response.content)
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(wrapped.astype(int) - expected.astype(int)).max() > 100  # the wrap


def test_cases_cover_every_style_key() -> None:
    keys: set[str] = set()
    for _name, style, *_rest in CASES:
        for entry in style.get("bands", [style]):
            keys |= set(entry)
        keys |= set(style)
    assert keys >= {
        "band", "frame", "framedelta", "min", "max", "palette", "scheme", "nodata",
        "composite", "clamp", "dtype", "axis", "bands",
    }  # fmt: skip
    assert len(CASES) >= 25


BAD_STYLES = [
    '{"band": "purple"}',
    '{"band": 0}',
    '{"min": "lowest"}',
    '{"max": "max:7"}',
    '{"palette": "not_a_colormap"}',
    '{"palette": ["#fff", "rgb(300, 0, 0)"]}',
    '{"scheme": "log"}',
    '{"composite": "screen"}',
    '{"dtype": "int8"}',
    '{"clamp": "no"}',
    '{"bands": [{"band": 1, "bands": []}]}',
    json.dumps({"bands": [{"palette": [[[[[[[[1]]]]]]]]}]}),
    json.dumps({"palette": ["#000000"] * 2000}),  # > 16 KiB
    '{"band": 1, "frame": 99}',  # a frame the file lacks: found by the worker
    '{"band": 1, "framedelta": -1}',  # frame -1 from frame 0
]


@pytest.mark.parametrize("style", BAD_STYLES)
def test_bad_styles_are_400_naming_style(
    style: str, api: ApiServer, frame_sources: dict[str, str]
) -> None:
    base = f"/item/{frame_sources['multipage']}/tiles/zxy/0/0/0"
    response = api.get(base, params={"style": style})
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "style"
    # The worker still serves.
    good = api.get(base, params={"style": '{"band": 1, "frame": 2, "palette": "#0f0"}'})
    assert good.status_code == 200, good.text


def test_statistics_are_computed_once_and_shared(
    api: ApiServer, frame_images: dict[str, Path], frame_sources: dict[str, str], state: Any
) -> None:
    """``auto`` ranges come from one cached entry per (source, generation, frame, kind),
    holding large_image's own ``_scanForMinMax`` numbers."""
    source = frame_sources["int16"]
    for x, y in ((0, 0), (1, 0), (2, 1)):
        response = api.get(
            f"/item/{source}/tiles/zxy/2/{x}/{y}", params={"style": '{"palette": "hot"}'}
        )
        assert response.status_code == 200, response.text
    keys = [k.decode() for k in state.keys(f"tc:bandstats:{source}:*")]
    assert len(keys) == 1 and keys[0].endswith(":minmax:json")
    stats = json.loads(state.get(keys[0]))
    reference = large_image.open(str(frame_images["int16"]))
    reference._scanForMinMax(reference.dtype, 0)
    assert stats["min"] == reference._bandRanges[0]["min"].tolist()
    assert stats["max"] == reference._bandRanges[0]["max"].tolist()
