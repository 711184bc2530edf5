"""The registry of sources in the state Redis: records, metadata and generations.

``tc:sources`` is a hash of id -> record JSON (small, never evicted);
``tc:gen:{id}`` is the source's generation, bumped to retire all its cached tiles.

A record carries the generation it was stored under and the identity of the file it
describes (common/fileidentity.py): a worker that opens the file for a render of
another generation, or finds another file there, does not read it as this record's
(workers/filechanges.py). Storing a record and moving the generation on happen in
one transaction, so a record and its generation never disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis

from tilecast.common.errors import SourceGone, UnknownSource
from tilecast.common.fileidentity import Identity
from tilecast.common.keys import SOURCES_KEY, generation_key


@dataclass(frozen=True)
class SourceRecord:
    id: str
    path: str
    name: str
    metadata: dict[str, Any]
    created: float = field(default_factory=time.time)
    # The generation this record was stored under (None: stored by an older tilecast).
    generation: int | None = None
    # The identity of the file described (None: unknown, never compared).
    identity: Identity | None = None
    # Why the file can no longer be read (deleted, truncated): None while it can.
    unreadable: str | None = None

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
        stored = self._store(record, expect=None)
        assert stored is not None
        return stored

    def replace_if(self, record: SourceRecord, expect: int) -> tuple[bool, int]:
        """Store ``record`` under a new generation only if the source is registered
        and still at generation ``expect`` (the one whose file was found changed).
        ``(stored, generation)``: when another process got there first, ``stored`` is
        False and ``generation`` is the current one."""
        stored = self._store(record, expect=expect)
        if stored is None:
            return False, self.generation(record.id) or 0
        return True, stored[1]

    def _store(self, record: SourceRecord, expect: int | None) -> tuple[bool, int] | None:
        """Store ``record`` under the next generation, in one transaction with the
        move of the generation; None when ``expect`` is given and not met."""
        key = generation_key(record.id)
        with self.state.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    current = int(pipe.get(key) or 0)  # type: ignore[arg-type]
                    if expect is not None and (
                        current != expect or not pipe.hexists(SOURCES_KEY, record.id)
                    ):
                        pipe.unwatch()
                        return None
                    generation = current + 1
                    pipe.multi()
                    pipe.hset(
                        SOURCES_KEY, record.id, replace(record, generation=generation).to_json()
                    )
                    pipe.set(key, generation)
                    created, _ = pipe.execute()
                    return bool(created), generation
                except redis.WatchError:
                    continue  # another registration or removal meanwhile: read again

    def get(self, source_id: str) -> SourceRecord:
        data = self.state.hget(SOURCES_KEY, source_id)
        if data is None:
            raise UnknownSource.of(source_id)
        return SourceRecord.from_json(data)  # type: ignore[arg-type]

    def readable(self, source_id: str) -> SourceRecord:
        """``get``, refusing (410) a source whose file is gone: its record keeps the
        metadata of a file that is no longer there, which is never served."""
        record = self.get(source_id)
        if record.unreadable is not None:
            raise SourceGone(record.unreadable)
        return record

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
        key = generation_key(source_id)
        with self.state.pipeline() as pipe:
            while True:
                try:
                    # Every change of a record also moves its generation: watching
                    # that key is enough to never resurrect nor lose a record.
                    pipe.watch(key)
                    if not pipe.hexists(SOURCES_KEY, source_id):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hdel(SOURCES_KEY, source_id)
                    pipe.incr(key)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def bump_generation(self, source_id: str) -> int:
        """Retire every cached tile of the source: its record, unchanged, moves to the
        next generation."""
        return self.register(self.get(source_id))[1]
