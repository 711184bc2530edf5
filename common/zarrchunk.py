"""One chunk of the OME-Zarr view of an image (``/zarr/{id}/``, docs/EXPORTS.md): the
request type both sides name it by, and the codec its bytes are written in.

A chunk is one tile of tilecast's grid -- level ``z``, column ``x``, row ``y`` -- of one
frame, all of its bands: ``bands x tileHeight x tileWidth`` raw pixels in the image's
own data type, little-endian, C order, zero past the image's edge (zarr wants every
chunk whole), then compressed. The api maps a zarr chunk key to (frame, z, x, y)
(api/protocols/zarrlayout.py); a worker renders it from the same raw tiles every other
answer is made of (workers/zarrchunk.py); it is cached under :meth:`ChunkRequest.key`,
so a new generation of the source is a new key and old chunks are never served.

The codec is zlib (``{"id": "zlib", "level": 1}`` in numcodecs' terms): every zarr
reader ships it (zarr-python through numcodecs, zarr.js / zarrita and tensorstore
natively) and Python's standard library writes it, so a worker needs no compiled
codec. Level 1: about 0.4 ms per 256 x 256 x 3 tile, within a few percent of level 6's
size on image data (workers/rawtile.py measured the same trade-off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tilecast.common.keys import cache_key
from tilecast.common.style import NO_STYLE

KIND_ZARR_CHUNK = "zchunk"
CODEC_ID = "zlib"
CODEC_LEVEL = 1
# The ``compressor`` of every ``.zarray`` (numcodecs' configuration of the codec).
COMPRESSOR: Mapping[str, Any] = {"id": CODEC_ID, "level": CODEC_LEVEL}
# What the key's encoding part says: the codec and its level (another codec, another key).
KEY_ENCODING = f"{CODEC_ID}{CODEC_LEVEL}"
# Chunks are opaque bytes to an HTTP client (zarr readers ignore the type).
CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ChunkRequest:
    """The chunk holding tile (z, x, y) of ``frame`` (z counted as tilecast's levels:
    0 is the coarsest; the zarr dataset path is ``levels - 1 - z``)."""

    source: str
    frame: int
    z: int
    x: int
    y: int

    def key(self, generation: int) -> str:
        return cache_key(
            KIND_ZARR_CHUNK,
            self.source,
            generation,
            self.frame,
            self.z,
            self.x,
            self.y,
            NO_STYLE,
            KEY_ENCODING,
        )

    def to_payload(self) -> dict[str, Any]:
        return {"source": self.source, "frame": self.frame, "z": self.z, "x": self.x, "y": self.y}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ChunkRequest:
        return cls(
            source=str(payload["source"]),
            frame=int(payload["frame"]),
            z=int(payload["z"]),
            x=int(payload["x"]),
            y=int(payload["y"]),
        )
