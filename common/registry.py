"""The registry of sources in the state Redis: records, metadata and generations.

``tc:sources`` is a hash of id -> record JSON (small, never evicted);
``tc:gen:{id}`` is the source's generation, bumped to retire all its cached tiles.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from common.errors import UnknownSource

SOURCES_KEY = "tc:sources"


def generation_key(source_id: str) -> str:
    return f"tc:gen:{source_id}"


def describe_key(source_id: str) -> str:
    """The done key of a ``describe_source`` task (its in-flight marker and completion)."""
    return f"tc:describe:{source_id}"


@dataclass(frozen=True)
class SourceRecord:
    id: str
    path: str
    name: str
    metadata: dict[str, Any]
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, data: bytes | str) -> SourceRecord:
        return cls(**json.loads(data))

    def summary(self) -> dict[str, Any]:
        """What ``GET /sources`` lists."""
        return {"id": self.id, "name": self.name, "path": self.path, "created": self.created}


class SourceRegistry:
    def __init__(self, state: redis.Redis) -> None:
        self.state = state

    def add(self, record: SourceRecord) -> bool:
        """Store ``record``; True when it is new. Re-adding keeps the id and bumps the
        generation so that tiles rendered from an older file are never served."""
        return self.register(record)[0]

    def register(self, record: SourceRecord) -> tuple[bool, int]:
        """``add``, also answering the generation this record got (atomically)."""
        pipe = self.state.pipeline()
        pipe.hset(SOURCES_KEY, record.id, record.to_json())
        pipe.incr(generation_key(record.id))
        created, generation = pipe.execute()
        return bool(created), int(generation)

    def get(self, source_id: str) -> SourceRecord:
        data = self.state.hget(SOURCES_KEY, source_id)
        if data is None:
            raise UnknownSource.of(source_id)
        return SourceRecord.from_json(data)  # type: ignore[arg-type]

    def exists(self, source_id: str) -> bool:
        return bool(self.state.hexists(SOURCES_KEY, source_id))

    def is_current(self, source_id: str, after: int | None) -> bool:
        """Whether the source is registered and, when ``after`` is given, described
        again since its generation was ``after`` (its file changed then)."""
        if not self.exists(source_id):
            return False
        return after is None or (self.generation(source_id) or 0) > after

    def all(self) -> list[SourceRecord]:
        records = [SourceRecord.from_json(v) for v in self.state.hvals(SOURCES_KEY)]  # type: ignore[union-attr]
        return sorted(records, key=lambda r: r.created)

    def generation(self, source_id: str) -> int | None:
        """The current generation, or None when the source is unknown."""
        value = self.state.get(generation_key(source_id))
        return None if value is None else int(value)  # type: ignore[arg-type]

    def remove(self, source_id: str) -> bool:
        """Forget the source; True when it was registered. Its generation counter is
        bumped, never deleted: a later registration of the same file (the same id)
        starts past every key rendered before, so no tile of the old file is served."""
        if not self.state.hdel(SOURCES_KEY, source_id):
            return False
        self.state.incr(generation_key(source_id))
        return True

    def bump_generation(self, source_id: str) -> int:
        if not self.exists(source_id):
            raise UnknownSource.of(source_id)
        return int(self.state.incr(generation_key(source_id)))  # type: ignore[arg-type]
