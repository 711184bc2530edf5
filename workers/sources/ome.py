"""OME-TIFF: the OME-XML of the first page, read the way large_image's ``ometiff`` source
reads it (that source, not the plain TIFF one, answers for OME files in large_image).

:func:`parse_ome` returns, for a description holding OME-XML, the frames (one per
plane, with ``IndexC`` / ``IndexZ`` / ``IndexT`` and the plane's own attributes), the
channel names, which main-chain page holds each frame, and the pixel size. Layouts the
``ometiff`` source refuses raise :class:`OmeUnsupported`; large_image then opens the
file with its TIFF source, and so does the caller (pages in file order, no axes).

Reduced levels of an OME-TIFF live in each page's SubIFDs, which the TIFF reader
already assigns to the page's frame.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

# Metres per unit of OME's PhysicalSize*Unit (the units large_image knows).
UNITS_TO_METERS: dict[str, float] = {
    "Ym": 1e24, "Zm": 1e21, "Em": 1e18, "Pm": 1e15, "Tm": 1e12, "Gm": 1e9, "Mm": 1e6,
    "km": 1e3, "hm": 1e2, "dam": 1e1, "m": 1, "dm": 1e-1, "cm": 1e-2, "mm": 1e-3,
    "\u00b5m": 1e-6, "nm": 1e-9, "pm": 1e-12, "fm": 1e-15, "am": 1e-18, "zm": 1e-21,
    "ym": 1e-24, "\u00c5": 1e-10,
}  # fmt: skip
DEFAULT_UNIT = "\u00b5m"
# OME's plane coordinates, renamed to large_image's axis keys.
AXIS_KEYS = {
    "TheC": "IndexC",
    "TheZ": "IndexZ",
    "TheT": "IndexT",
    "FirstC": "IndexC",
    "FirstZ": "IndexZ",
    "FirstT": "IndexT",
}


class OmeUnsupported(ValueError):
    """OME-XML whose layout large_image's OME source does not read."""


@dataclass(frozen=True)
class OmeLayout:
    frames: list[dict[str, Any]]  # per frame, before frameinfo.frame_metadata
    channels: list[str]
    ifds: list[int]  # the main-chain page of each frame
    mm_x: float | None
    mm_y: float | None


def xml_to_dict(element: ElementTree.Element) -> dict[str, Any]:
    """An element as nested dictionaries without namespaces: children by tag (a list when
    repeated), attributes as strings, text as ``text`` (or the value itself when the
    element has nothing else) -- large_image's ``etreeToDict``."""
    tag = _local(element.tag)
    children = list(element)
    body: Any = {}
    if children:
        grouped: dict[str, list[Any]] = {}
        for child in children:
            for key, value in xml_to_dict(child).items():
                grouped.setdefault(key, []).append(value)
        body = {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}
    if element.attrib:
        body.update({_local(key): value for key, value in element.attrib.items()})
    text = (element.text or "").strip()
    if text and body:
        body["text"] = text
    elif text:
        body = text
    return {tag: body}


def _local(name: str) -> str:
    return name.split("}", 1)[1] if name.startswith("{") else name


def parse_ome(description: bytes | None) -> OmeLayout | None:
    """The OME layout of a first page's ImageDescription; None when it holds no OME."""
    if not description:
        return None
    text = description.decode(errors="ignore")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    record = xml_to_dict(root)
    ome = record.get("OME")
    if not isinstance(ome, dict) or not ome:
        return None
    try:
        return _layout(ome)
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
        if isinstance(exc, OmeUnsupported):
            raise
        raise OmeUnsupported(f"the OME-XML lacks an expected record: {exc!r}") from None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _layout(ome: dict[str, Any]) -> OmeLayout:
    images = _as_list(ome["Image"])
    for image in images:
        if isinstance(image["Pixels"], list):
            raise OmeUnsupported("the OME image has several Pixels elements")
        pixels = image["Pixels"]
        for key in ("TiffData", "Plane"):
            if isinstance(pixels.get(key), dict):
                pixels[key] = [pixels[key]]
    base = images[0]["Pixels"]
    tiffdata = base["TiffData"]
    described = base.get("Plane", base.get("Channel"))
    if (not len(tiffdata) or len(tiffdata) == 1) and (
        len(base.get("Plane", [])) or len(base.get("Channel", []))
    ):
        if not len(tiffdata) or tiffdata[0] == {} or int(tiffdata[0].get("PlaneCount", 0)) == 1:
            # No usable TiffData: the planes (or, lacking them, the channels) are the
            # frames, channel by channel.
            planes = copy.deepcopy(described)
            if isinstance(planes, dict):
                planes = [planes]
                base["SizeC"] = 1
            for number, plane in enumerate(planes):
                plane["IndexC"] = number
            base["TiffData"] = planes
        elif int(tiffdata[0].get("PlaneCount", 0)) == len(described or []):
            # One TiffData for consecutive pages: one frame per described plane.
            planes = copy.deepcopy(described)
            first = int(tiffdata[0].get("IFD", 0))
            for number, plane in enumerate(planes):
                plane["IFD"] = plane.get("IFD", first + number)
            base["TiffData"] = planes
    if isinstance(base["TiffData"], dict):
        base["TiffData"] = [base["TiffData"]]
    tiffdata = base["TiffData"]
    files = {
        (entry.get("UUID") or {}).get("FileName", "") if isinstance(entry, dict) else ""
        for entry in tiffdata
    }
    if len(files) > 1:
        raise OmeUnsupported("the OME-TIFF references several files")
    if len(tiffdata) == int(base["SizeT"]) * int(base["SizeZ"]):
        base["SizeC"] = 1  # the channels are the samples of each page
    elif len(images) > 1:
        for image in images[1:]:
            try:
                same = (image["Pixels"]["SizeX"], image["Pixels"]["SizeY"]) == (
                    base["SizeX"],
                    base["SizeY"],
                )
            except (KeyError, TypeError):
                same = True
            if same:
                raise OmeUnsupported("the OME-TIFF holds several full-size images")
    planes_count = int(base["SizeC"]) * int(base["SizeT"]) * int(base["SizeZ"])
    if len(tiffdata) != planes_count or len(tiffdata) != len(base.get("Plane", tiffdata)):
        raise OmeUnsupported("the OME-TIFF has frames that hold several planes")
    if sum(len(image["Pixels"].get("TiffData") or []) == len(tiffdata) for image in images) > 1:
        # Reduced resolutions stored as further OME images: not read here.
        raise OmeUnsupported("the OME-TIFF stores its levels as separate images")
    ifds = [int(entry.get("IFD", number)) for number, entry in enumerate(tiffdata)]
    frames = _frames(base, images)
    mm_x = _millimetres(base, "X")
    mm_y = _millimetres(base, "Y")
    return OmeLayout(frames, _channels(images, len(frames)), ifds, mm_x, mm_y)


def _frames(base: dict[str, Any], images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = copy.deepcopy(base.get("Plane", base["TiffData"]))
    for axis in ("C", "Z", "T"):
        # A single axis that spans every frame, with no index of its own: number it.
        if (
            str(len(frames)) == str(base.get(f"Size{axis}"))
            and len(frames) > 1
            and frames[0].get(f"Index{axis}") is None
        ):
            for number, frame in enumerate(frames):
                frame[f"Index{axis}"] = number
    for frame in frames:
        for key, target in AXIS_KEYS.items():
            if key in frame and target not in frame and int(frame[key]) < len(frames):
                frame[target] = int(frame[key])
            frame.pop(key, None)
    return frames


def _channels(images: list[dict[str, Any]], frame_count: int) -> list[str]:
    channels: list[str] = []
    for image in images:
        try:
            channels = [channel["Name"] for channel in image["Pixels"]["Channel"]]
        except (KeyError, TypeError):
            continue
        if len(channels) > 1:
            break
    if len(set(channels)) != len(channels) and (len(channels) <= 1 or len(channels) > frame_count):
        return []
    return channels


def _millimetres(base: dict[str, Any], axis: str) -> float | None:
    size = base.get(f"PhysicalSize{axis}")
    if size is None:
        return None
    unit = base.get(f"PhysicalSize{axis}Unit", DEFAULT_UNIT)
    if unit not in UNITS_TO_METERS:
        raise OmeUnsupported(f"unknown OME unit {unit!r}")
    return float(size) * 1e3 * UNITS_TO_METERS[unit]
