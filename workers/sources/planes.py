"""What the microscopy readers (CZI, ND2, LIF) share: frames numbered over axes and a
bounded cache of planes decoded whole. (The file object they hand to libraries that
read streams is workers/sources/files.py's FileStream.)

Frames: a multi-dimensional image (channels, z-planes, time points, scenes or stage
positions) is a list of 2-D frames, numbered with the first axis fastest, each frame
described by its axis indices (``IndexC``, ``IndexZ``, ``IndexT``, ``IndexXY``) -- the
keys large_image's sources report and its styles' ``frame`` / ``framedelta`` use.

Planes decoded whole: where a library can only hand out a whole plane (a compressed
ND2 frame), the reader keeps a few decoded planes (:class:`PlaneCache`, bounded in bytes,
one decode per plane however many threads ask for its tiles at once) and refuses at
open, with a 422, a plane that could not fit it.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilecast.common.errors import UnsupportedImage

# Decoded planes one reader keeps; a plane larger than this cannot be read whole.
PLANE_CACHE_BYTES = 256 * 1024 * 1024
# More frames than this is no image anyone views frame by frame: refused at open (it
# also bounds the metadata a reader builds).
MAX_FRAMES = 100_000


@dataclass(frozen=True)
class Axis:
    """One frame axis: large_image's key (``IndexC``...) and its number of values."""

    key: str
    size: int


def frame_indices(axes: Sequence[Axis]) -> list[dict[str, int]]:
    """One dict of axis indices per frame, the first axis fastest (every axis is named
    in every frame, as large_image's bioformats source names them)."""
    count = 1
    for axis in axes:
        count *= axis.size
    if count > MAX_FRAMES:
        raise UnsupportedImage(f"the image has {count} frames, more than {MAX_FRAMES}")
    ranges = [range(axis.size) for axis in reversed(axes)]
    return [
        {axis.key: combo[-1 - number] for number, axis in enumerate(axes)}
        for combo in itertools.product(*ranges)
    ]


def check_pixels(width: int, height: int, limit: int, what: str = "the image") -> None:
    """Refuse (422) sizes that are no image or that pass the decoding bound."""
    if width <= 0 or height <= 0:
        raise UnsupportedImage(f"{what} has a size of {width} x {height}")
    if width * height > limit:
        raise UnsupportedImage(
            f"{what} has {width * height} pixels, more than the {limit} this server decodes"
        )


def check_plane_bytes(nbytes: int) -> None:
    """Refuse (422) a plane that must be decoded whole and could not fit the cache."""
    if nbytes > PLANE_CACHE_BYTES:
        raise UnsupportedImage(
            f"a plane must be decoded whole to {nbytes} bytes, more than the "
            f"{PLANE_CACHE_BYTES} a reader holds"
        )


class PlaneCache:
    """Planes decoded whole, least recently used dropped first past ``capacity`` bytes.
    Concurrent askers of one plane wait for one decode."""

    def __init__(self, capacity: int = PLANE_CACHE_BYTES) -> None:
        self.capacity = capacity
        self._planes: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._decoding: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()
        self.decodes = 0  # how many planes were decoded (tests and logs)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(plane.nbytes for plane in self._planes.values())

    def get(self, key: Any, decode: Callable[[], np.ndarray]) -> np.ndarray:
        plane = self._lookup(key)
        if plane is not None:
            return plane
        with self._lock:
            gate = self._decoding.setdefault(key, threading.Lock())
        with gate:
            plane = self._lookup(key)
            if plane is None:
                plane = decode()
                self._store(key, plane)
        with self._lock:
            self._decoding.pop(key, None)
        return plane

    def clear(self) -> None:
        with self._lock:
            self._planes.clear()

    def _lookup(self, key: Any) -> np.ndarray | None:
        with self._lock:
            plane = self._planes.get(key)
            if plane is not None:
                self._planes.move_to_end(key)
            return plane

    def _store(self, key: Any, plane: np.ndarray) -> None:
        with self._lock:
            self.decodes += 1
            self._planes[key] = plane
            used = sum(item.nbytes for item in self._planes.values())
            while used > self.capacity and len(self._planes) > 1:
                _, dropped = self._planes.popitem(last=False)
                used -= dropped.nbytes


def error_text(exc: BaseException, path: str | None = None) -> str:
    """A library's exception as a client may read it: its first line, without the
    file's path, at most 200 characters."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    if path:
        text = text.replace(path, "the file")
    return text[:200]


def crop_or_pad(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``pixels`` (height, width, bands) cut or zero-padded to exactly height x width."""
    pixels = pixels[:height, :width]
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels
    out = np.zeros((height, width, pixels.shape[2]), dtype=pixels.dtype)
    out[: pixels.shape[0], : pixels.shape[1]] = pixels
    return out
