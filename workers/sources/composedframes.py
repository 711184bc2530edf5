"""Which frames a composed image has, and which part frames make each one: large_image's
``multi`` placement (``_addSourceToFrames``, ``_axisKey``, ``_adjustFramesAsAxes``,
``_frameDictToFrames``), entry by entry, in the description's order.

Each frame of a part gets a position on every axis (``c``, ``z``, ``t``, ``xy`` and the
description's extra ``axes``) -- its own index on that axis, moved by the entry's
``<axis>`` offset, replaced by ``<axis>Set``, or mapped through ``<axis>Values`` -- and
a plain frame number (``frame``, ``frameValues``). A part frame whose channel is named
(the entry's ``channel`` / ``channels``, else the part's own channel names) lands on
that name's channel. An entry with no axis key at all is stacked after what came before
it (one ``z`` further). The composed frames are then every combination of axis
positions, ``c`` varying fastest, each listing the part frames placed there -- unless
only plain frame numbers were given, or a multi-frame part has no axes and none were
given for it: then the frames are the plain frame numbers.

One deliberate difference: ``<axis>Values`` shorter than the part's frames continue
with the stride of their last two values (large_image's documented behaviour; its code
repeats the last value once before striding on).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.sources.composedspec import Entry

MAX_FRAMES = 1 << 16  # composed frames, empty ones included
MAX_POSITION = 1 << 20  # on one axis (the frames they make are bounded apart)


@dataclass(frozen=True)
class PartFrames:
    """What the placement needs of a part: its frames' axis indices (large_image's
    ``frames`` metadata, one dict per frame), its channel names, and whether it has
    axes (``IndexRange``)."""

    frames: Sequence[Mapping[str, Any]]
    channels: Sequence[str]
    has_axes: bool


@dataclass
class Layout:
    """The composed frames: for each, the (entry index, part frame) pairs drawn into it in
    order, and the axis indices large_image reports for it; the channel names."""

    sources: list[list[tuple[int, int]]] = field(default_factory=list)
    info: list[dict[str, int]] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)


class _Placement:
    def __init__(self, axes: Sequence[str], channels: Sequence[str]) -> None:
        self.axes = tuple(axes)
        self.channels = list(channels)
        self.by_frame: dict[int, list[tuple[int, int]]] = {}
        self.by_axes: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        self.axes_allowed = True

    def add(self, entry: Entry, part: PartFrames) -> None:
        settings = dict(entry.settings)
        frames = list(part.frames) or [{"Frame": 0, "Index": 0}]
        names = list(part.channels)
        if settings.get("channels"):
            names[: len(settings["channels"])] = settings["channels"]
        elif settings.get("channel"):
            names[:1] = [settings["channel"]]
        if len(names) > len(self.channels):
            self.channels += names[len(self.channels) :]
        placing = {"frame", "frameValues", *self.axes, *(f"{axis}Values" for axis in self.axes)}
        if not placing & settings.keys():
            # Nothing says where: after everything placed so far.
            if self.by_frame:
                settings["frame"] = max(self.by_frame) + 1
            if self.by_axes:
                settings["z"] = max(key[self.axes.index("z")] for key in self.by_axes) + 1
        strides = settings.get("framesAsAxes")
        wanted = settings.get("frames")
        for number, frame in enumerate(frames):
            if wanted is not None and number not in wanted:
                continue
            if strides:
                frame = _frames_as_axes(len(frames), number, strides, self.axes, entry)
            frame_key = _position(entry, settings, number, "frame")
            c_index = frame.get("IndexC", 0)
            key = tuple(
                _position(entry, settings, frame.get(f"Index{axis.upper()}") or 0, axis)
                for axis in self.axes
            )
            channel = names[c_index] if c_index < len(names) else None
            named = "channel" in settings or "channels" in settings
            if channel and channel not in self.channels and (named or len(self.channels) == key[0]):
                self.channels.append(channel)
            if channel and channel in self.channels and not {"c", "cValues"} & settings.keys():
                key = (self.channels.index(channel), *key[1:])
            self.by_frame.setdefault(frame_key, []).append((entry.index, number))
            self.axes_allowed = (self.axes_allowed and (len(frames) <= 1 or part.has_axes)) or any(
                key
            )
            self.by_axes.setdefault(key, []).append((entry.index, number))

    def layout(self) -> Layout:
        if not self.by_frame:
            raise UnsupportedImage("no frame of any source is used (every frames list excludes it)")
        out = Layout(channels=self.channels)
        if not self.axes_allowed:
            count = max(self.by_frame) + 1
            _check_count(count)
            out.sources = [self.by_frame.get(number, []) for number in range(count)]
            out.info = [{} for _ in range(count)]
            return out
        counts = [max(key[i] for key in self.by_axes) + 1 for i in range(len(self.axes))]
        _check_count(math.prod(counts))
        for reversed_key in itertools.product(*[range(count) for count in counts][::-1]):
            key = reversed_key[::-1]
            out.sources.append(self.by_axes.get(key, []))
            out.info.append(
                {
                    f"Index{axis.upper()}": key[i]
                    for i, axis in enumerate(self.axes)
                    if counts[i] > 1
                }
            )
        return out


def place(
    entries: Sequence[Entry],
    parts: Sequence[PartFrames],
    axes: Sequence[str],
    channels: Sequence[str] = (),
) -> Layout:
    """The composed frames of ``entries``, whose parts are ``parts`` (one each)."""
    placement = _Placement(axes, channels)
    for entry, part in zip(entries, parts, strict=True):
        placement.add(entry, part)
    return placement.layout()


def _check_count(count: int) -> None:
    if count > MAX_FRAMES:
        raise UnsupportedImage(
            f"the description places {count} frames; at most {MAX_FRAMES} are composed"
        )


def _position(entry: Entry, settings: Mapping[str, Any], value: int, axis: str) -> int:
    """The position on ``axis`` of the part frame whose own index there is ``value``."""
    if settings.get(f"{axis}Set") is not None:
        return int(settings[f"{axis}Set"])
    values = settings.get(f"{axis}Values") or ()
    offset = settings.get(axis, 0)
    if not values:
        position: float = value + offset
    elif len(values) == 1:
        position = values[0] + value + offset
    elif value < len(values):
        position = values[value] + offset
    else:
        stride = values[-1] - values[-2]
        position = values[-1] + stride * (value - len(values) + 1) + offset
    if position != int(position) or not 0 <= position <= MAX_POSITION:
        raise UnsupportedImage(
            f"{entry.label}: {axis}Values place its frame {value} at {axis} = {position}; "
            f"positions are whole numbers from 0 to {MAX_POSITION}"
        )
    return int(position)


def _frames_as_axes(
    count: int, number: int, strides: Mapping[str, int], axes: Sequence[str], entry: Entry
) -> dict[str, int]:
    """Frame ``number`` of a part of ``count`` frames, its axis indices read from its
    number by the entry's ``framesAsAxes`` strides."""
    ranges: dict[str, int] = {}
    remaining = count
    for stride, axis in sorted(((stride, axis) for axis, stride in strides.items()), reverse=True):
        ranges[axis] = remaining // stride
        if ranges[axis] == 0:
            raise UnsupportedImage(
                f"{entry.label}.framesAsAxes.{axis}: a stride of {stride} is more than the "
                f"frames the part has ({remaining})"
            )
        remaining = stride
    return {
        f"Index{axis.upper()}": (number // stride) % ranges[axis]
        for axis, stride in strides.items()
    }
