"""Associated images (a slide's ``label``, ``macro``, ``thumbnail``): the request type and
its cache keys, shared by the api (which names them) and the workers (which render them).

Both the list of names and each rendered image live in the cache under generation-
versioned keys built here, like tiles: bumping a source's generation retires them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tilecast.common.encoding import EncodingOptions
from tilecast.common.keys import cache_key
from tilecast.common.style import NO_STYLE

KIND_ASSOCIATED = "assoc"
KIND_ASSOCIATED_LIST = "assoclist"
LIST_ENCODING = "json"
# large_image names associated images with 4 to 20 letters or digits (or ``dir<n>``);
# anything else cannot name one, and must not reach a cache key.
NAME_PATTERN = re.compile(r"[A-Za-z0-9]{1,64}")


def associated_list_key(source: str, generation: int) -> str:
    """The JSON list of a source's associated image names."""
    return cache_key(
        KIND_ASSOCIATED_LIST, source, generation, 0, "-", "-", "-", NO_STYLE, LIST_ENCODING
    )


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class AssociatedRequest:
    """Associated image ``name`` of a source fitted into ``width`` x ``height`` (0 = that
    side unconstrained; both 0 = the stored size), in ``encoding``. ``name`` None asks
    for the list of names instead (JSON)."""

    source: str
    name: str | None = None
    width: int = 0
    height: int = 0
    encoding: EncodingOptions = field(default_factory=EncodingOptions)

    @property
    def is_list(self) -> bool:
        return self.name is None

    def key(self, generation: int) -> str:
        if self.name is None:
            return associated_list_key(self.source, generation)
        return cache_key(
            KIND_ASSOCIATED,
            self.source,
            generation,
            0,
            self.name,
            self.width,
            self.height,
            NO_STYLE,
            self.encoding.key_part,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "encoding": self.encoding.to_payload(),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AssociatedRequest:
        name = payload.get("name")
        return cls(
            source=str(payload["source"]),
            name=None if name is None else str(name),
            width=int(payload.get("width", 0)),
            height=int(payload.get("height", 0)),
            encoding=EncodingOptions.from_payload(payload["encoding"]),
        )
