"""The OME-Zarr view of an image (NGFF 0.4, zarr v2; docs/EXPORTS.md): its metadata
documents, built from the registered metadata in the api, and its chunks, which take
the one hit and miss path of every answer (api/miss/answers.py).

- ``.zgroup``: ``{"zarr_format": 2}``.
- ``.zattrs``: ``multiscales`` (one dataset per level, ``0`` the full resolution, a
  ``scale`` transformation each: micrometres from ``mm_x``/``mm_y`` when the image
  knows its pixel size, pixels otherwise) and ``omero`` (a channel per ``c`` index:
  its name, a colour, a display window over the data type's range).
- ``{dataset}/.zarray``: shape, chunks (one tile of one frame), dtype, the zlib
  compressor (common/zarrchunk.py), ``fill_value`` 0, ``dimension_separator`` ``/``.
- ``{dataset}/.zattrs``: ``{}``; ``.zmetadata``: all of the above, consolidated, for
  readers that read one document rather than one per dataset.
"""

from __future__ import annotations

from typing import Any

from tilecast.api.miss import answers
from tilecast.api.miss.answers import Image, Work
from tilecast.api.protocols.zarrlayout import AXIS_C, AXIS_T, AXIS_Z, ZARR_DTYPES, ZarrLayout
from tilecast.api.services import Services
from tilecast.common.taskprotocol import TASK_RENDER_ZARR_CHUNK, request_payload
from tilecast.common.zarrchunk import COMPRESSOR, CONTENT_TYPE, ChunkRequest

NGFF_VERSION = "0.4"
ZGROUP = ".zgroup"
ZATTRS = ".zattrs"
ZARRAY = ".zarray"
ZMETADATA = ".zmetadata"
MICROMETER = "micrometer"
_AXIS_TYPES = {AXIS_T: "time", AXIS_C: "channel", AXIS_Z: "space", "y": "space", "x": "space"}
# Display windows of the integer types: their whole range. Floats have no range to
# take: [0, 1], the convention of floating-point images.
_INTEGER_RANGES = {
    "uint8": (0, 255),
    "int8": (-128, 127),
    "uint16": (0, 65535),
    "int16": (-32768, 32767),
    "uint32": (0, 2**32 - 1),
    "int32": (-(2**31), 2**31 - 1),
}
_BAND_NAMES = {
    1: ("gray",),
    2: ("gray", "alpha"),
    3: ("red", "green", "blue"),
    4: ("red", "green", "blue", "alpha"),
}
_BAND_COLORS = {"gray": "FFFFFF", "red": "FF0000", "green": "00FF00", "blue": "0000FF"}
# Colours of the channels of a multi-channel image, in turn.
_CHANNEL_COLORS = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")


def zgroup() -> dict[str, Any]:
    return {"zarr_format": 2}


def zattrs(layout: ZarrLayout, name: str) -> dict[str, Any]:
    return {"multiscales": [multiscale(layout, name)], "omero": omero(layout, name)}


def multiscale(layout: ZarrLayout, name: str) -> dict[str, Any]:
    """The one ``multiscales`` entry: axes, and a dataset per level."""
    axes: list[dict[str, Any]] = []
    for axis in layout.axis_names:
        entry: dict[str, Any] = {"name": axis, "type": _AXIS_TYPES[axis]}
        if axis in ("y", "x") and layout.mm_x is not None and layout.mm_y is not None:
            entry["unit"] = MICROMETER
        axes.append(entry)
    datasets = []
    for dataset in range(layout.datasets):
        factor = float(2**dataset)
        scale = [1.0] * len(layout.frame_axes) + [
            _pixel_size(layout.mm_y, layout.mm_x) * factor,
            _pixel_size(layout.mm_x, layout.mm_y) * factor,
        ]
        datasets.append(
            {
                "path": str(dataset),
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            }
        )
    return {"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets}


def _pixel_size(mm: float | None, other: float | None) -> float:
    """Micrometres per full-resolution pixel along one axis; 1 (pixels) when the image
    lacks either size, since one axis in micrometres and one in pixels mean nothing."""
    if mm is None or other is None:
        return 1.0
    return mm * 1000.0


def omero(layout: ZarrLayout, name: str) -> dict[str, Any]:
    """OMERO rendering settings: one channel per ``c`` index of the array."""
    low, high = _INTEGER_RANGES.get(layout.dtype, (0, 1))
    window = {"min": low, "max": high, "start": low, "end": high}
    bands = _BAND_NAMES.get(layout.bands) or tuple(f"band {b + 1}" for b in range(layout.bands))
    channels: list[dict[str, Any]] = []
    for channel in range(layout.channels):
        for band in bands:
            channels.append(
                {
                    "label": _label(layout, channel, band),
                    "color": _color(layout, channel, band),
                    "window": dict(window),
                    "active": band != "alpha",
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": False,
                }
            )
    model = "color" if layout.channels > 1 or layout.bands >= 3 else "greyscale"
    return {
        "name": name,
        "version": NGFF_VERSION,
        "channels": channels,
        "rdefs": {"model": model, "defaultT": 0, "defaultZ": 0},
    }


def _label(layout: ZarrLayout, channel: int, band: str) -> str:
    names = layout.channel_names
    if layout.channels == 1:
        return names[0] if names and layout.bands == 1 else band
    base = names[channel] if names and channel < len(names) else f"channel {channel}"
    return base if layout.bands == 1 else f"{base} {band}"


def _color(layout: ZarrLayout, channel: int, band: str) -> str:
    if layout.channels > 1 and layout.bands == 1:
        return _CHANNEL_COLORS[channel % len(_CHANNEL_COLORS)]
    return _BAND_COLORS.get(band, "FFFFFF")


def zarray(layout: ZarrLayout, dataset: int) -> dict[str, Any]:
    return {
        "zarr_format": 2,
        "shape": layout.shape(dataset),
        "chunks": layout.chunks(),
        "dtype": ZARR_DTYPES[layout.dtype],
        "compressor": dict(COMPRESSOR),
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }


def zmetadata(layout: ZarrLayout, name: str) -> dict[str, Any]:
    """Every document of the view in one (zarr's consolidated metadata)."""
    documents: dict[str, Any] = {ZGROUP: zgroup(), ZATTRS: zattrs(layout, name)}
    for dataset in range(layout.datasets):
        documents[f"{dataset}/{ZARRAY}"] = zarray(layout, dataset)
        documents[f"{dataset}/{ZATTRS}"] = {}
    return {"zarr_consolidated_format": 1, "metadata": documents}


def chunk(svc: Services, request: ChunkRequest) -> Image:
    """The chunk named by ``request`` (the caller located it in the array, so a miss
    needs no other check than that the source is still readable)."""

    def miss(gen: int) -> Work:
        answers.metadata(svc, request.source)  # 410 for a source whose file is gone
        return Work(TASK_RENDER_ZARR_CHUNK, request_payload(request, gen))

    return answers.answer(svc, answers.ZARR_CHUNK, request.source, CONTENT_TYPE, request.key, miss)
