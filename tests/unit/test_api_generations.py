"""The per-process generation memo."""

from __future__ import annotations

import pytest

from tilecast.api.miss.generations import GenerationMemo
from tilecast.common.errors import UnknownSource


class Registry:
    def __init__(self) -> None:
        self.generations: dict[str, int] = {"a": 1}
        self.lookups = 0

    def generation(self, source_id: str) -> int | None:
        self.lookups += 1
        return self.generations.get(source_id)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def memo() -> tuple[GenerationMemo, Registry, Clock]:
    registry, clock = Registry(), Clock()
    return GenerationMemo(registry, ttl=1.0, clock=clock), registry, clock  # type: ignore[arg-type]


def test_remembers_for_ttl() -> None:
    generations, registry, clock = memo()
    assert generations.get("a") == 1
    registry.generations["a"] = 2
    clock.now += 0.9
    assert generations.get("a") == 1
    assert registry.lookups == 1
    clock.now += 0.2
    assert generations.get("a") == 2
    assert registry.lookups == 2


def test_unknown_is_never_remembered() -> None:
    generations, registry, _clock = memo()
    with pytest.raises(UnknownSource):
        generations.get("b")
    registry.generations["b"] = 1
    assert generations.get("b") == 1
