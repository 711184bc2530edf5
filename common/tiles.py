"""``TileRequest`` and ``ThumbnailRequest``: parsed once at the edge, named by one key.

Keys follow DESIGN.md: ``tc:{kind}:{source}:{generation}:{frame}:{z}:{x}:{y}:{style}:{enc}``.
``generation`` is the per-source counter of the state Redis: bumping it retires every
key of the source at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tilecast.common.encoding import EncodingOptions
from tilecast.common.fill import fill_key_part
from tilecast.common.keys import cache_key
from tilecast.common.style import NO_STYLE, style_hash

KIND_TILE = "tile"  # styled and encoded, what a client receives
KIND_RAW = "raw"  # unstyled intermediate tile, lossless
KIND_THUMB = "thumb"
RAW_ENCODING = "raw"


@dataclass(frozen=True)
class TileRequest:
    """One tile of one source, as a client asked for it."""

    source: str
    z: int
    x: int
    y: int
    frame: int = 0
    style: str | None = None  # canonical JSON, see common.style.canonical_style
    encoding: EncodingOptions = field(default_factory=EncodingOptions)

    def key(self, generation: int) -> str:
        """The styled, encoded tile: what the hit path GETs."""
        return cache_key(
            KIND_TILE,
            self.source,
            generation,
            self.frame,
            self.z,
            self.x,
            self.y,
            style_hash(self.style),
            self.encoding.key_part,
        )

    def raw_key(self, generation: int) -> str:
        """The unstyled tile this one is made from (style and encoding do not matter)."""
        return raw_tile_key(self.source, generation, self.frame, self.z, self.x, self.y)

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "z": self.z,
            "x": self.x,
            "y": self.y,
            "frame": self.frame,
            "style": self.style,
            "encoding": self.encoding.to_payload(),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TileRequest:
        return cls(
            source=str(payload["source"]),
            z=int(payload["z"]),
            x=int(payload["x"]),
            y=int(payload["y"]),
            frame=int(payload.get("frame", 0)),
            style=payload.get("style"),
            encoding=EncodingOptions.from_payload(payload["encoding"]),
        )


def raw_tile_key(source: str, generation: int, frame: int, z: int, x: int, y: int) -> str:
    return cache_key(KIND_RAW, source, generation, frame, z, x, y, NO_STYLE, RAW_ENCODING)


@dataclass(frozen=True)
class ThumbnailRequest:
    """A whole-image thumbnail that fits in ``width`` x ``height`` (0 = unconstrained),
    letterboxed to exactly that with ``fill`` (canonical, see common/fill.py)."""

    source: str
    width: int
    height: int
    frame: int = 0
    style: str | None = None
    encoding: EncodingOptions = field(default_factory=EncodingOptions)
    fill: str | None = None

    def __post_init__(self) -> None:
        if not (self.width and self.height):  # large_image ignores it then: one key
            object.__setattr__(self, "fill", None)

    def key(self, generation: int) -> str:
        return cache_key(
            KIND_THUMB,
            self.source,
            generation,
            self.frame,
            "fit" + fill_key_part(self.fill),
            self.width,
            self.height,
            style_hash(self.style),
            self.encoding.key_part,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "frame": self.frame,
            "style": self.style,
            "encoding": self.encoding.to_payload(),
            "fill": self.fill,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ThumbnailRequest:
        return cls(
            source=str(payload["source"]),
            width=int(payload["width"]),
            height=int(payload["height"]),
            frame=int(payload.get("frame", 0)),
            style=payload.get("style"),
            encoding=EncodingOptions.from_payload(payload["encoding"]),
            fill=payload.get("fill"),
        )
