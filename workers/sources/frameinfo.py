"""The ``frames`` part of large_image's metadata, computed as large_image computes it.

A reader supplies one dictionary per frame (whatever axis indices it knows --
``IndexC``, ``IndexZ``, ``IndexT``, ``IndexXY``, any ``Index<axis>`` -- plus descriptive
values such as OME's ``ExposureTime``) and, when known, the channel names.
:func:`frame_metadata` then adds ``Frame``, ``Index`` and ``Channel`` to each frame and
returns the image-level entries: ``frames``, ``IndexRange``, ``IndexStride``,
``channels``, ``channelmap`` and any ``Value<axis>`` summaries -- field for field what
large_image's ``_addMetadataFrameInformation`` reports for the same input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np


def frame_metadata(
    frames: Sequence[dict[str, Any]], channels: Sequence[str] | None = None
) -> dict[str, Any]:
    """The metadata entries of a multi-frame image (``frames`` is not modified)."""
    result: dict[str, Any] = {"frames": copy.deepcopy(list(frames))}
    out: list[dict[str, Any]] = result["frames"]
    largest: dict[str, int] = {}  # axis key -> number of index values (max + 1)
    keys = {"IndexC"}
    index = 0
    for number, frame in enumerate(out):
        # Keys seen so far accumulate, as large_image's do: a frame is compared with its
        # predecessor on every axis any earlier frame had.
        keys |= {key for key in frame if key.startswith("Index") and len(key) > len("Index")}
        for key in keys:
            if key in frame and frame[key] + 1 > largest.get(key, 0):
                largest[key] = frame[key] + 1
        frame["Frame"] = number
        if number and (
            any(frame.get(key) != out[number - 1].get(key) for key in keys if key != "IndexC")
            or not any(frame.get(key) for key in keys)
        ):
            index += 1
        frame["Index"] = index
    result.update(_value_information(out))
    if any(count > 1 for count in largest.values()):
        result["IndexRange"] = {key: count for key, count in largest.items() if count > 1}
        result["IndexStride"] = {
            key: next(i for i, frame in enumerate(out) if frame.get(key) == 1)
            for key in result["IndexRange"]
        }
    channel_count = largest.get("IndexC", 1)
    if channels and len(channels) >= channel_count:
        names = list(channels[:channel_count])
        result["channels"] = names
        result["channelmap"] = {name: c for c, name in enumerate(names)}
        for frame in out:
            frame["Channel"] = channels[frame.get("IndexC", 0)]
    return result


def _value_information(frames: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``Value<axis>`` summaries of frames that carry per-axis values (large_image's
    ``_getFrameValueInformation``; ``units`` are unknown to TIFF readers)."""
    by_key: dict[str, dict[str, list[Any]]] = {}
    for frame in frames:
        for key, value in frame.items():
            if "Value" in key:
                slot = str(frame.get(key.replace("Value", "Index")))
                by_key.setdefault(key, {}).setdefault(slot, []).append(value)
    info: dict[str, Any] = {}
    for key, mapping in by_key.items():
        values = [items[0] for items in mapping.values() if items]
        try:
            low, high = min(values), max(values)
        except TypeError:
            low = high = None
        info[key] = {
            "values": values,
            "uniform": all(len(set(items)) <= 1 for items in mapping.values()),
            "units": None,
            "min": low,
            "max": high,
            "datatype": np.array(values).dtype.name,
        }
    return info
