"""The per-reader cache of decoded chunks (workers/sources/chunkcache.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tilecast.workers.sources.chunkcache import ChunkCache


def chunk(value: int, nbytes: int = 100) -> np.ndarray:
    return np.full(nbytes, value, np.uint8)


def test_least_recently_used_chunks_leave_first_within_the_byte_bound() -> None:
    cache = ChunkCache(300)
    for key in "abc":
        cache.get(key, lambda k=key: chunk(ord(k)))
    cache.get("a", lambda: chunk(0))  # a hit: "a" is now the most recent
    cache.get("d", lambda: chunk(ord("d")))  # over 300 bytes: "b" leaves
    assert cache.nbytes == 300
    loads: list[str] = []
    for key in "acd":
        cache.get(key, lambda k=key: loads.append(k) or chunk(0))  # type: ignore[func-returns-value]
    assert loads == []
    cache.get("b", lambda: loads.append("b") or chunk(0))  # type: ignore[func-returns-value]
    assert loads == ["b"]


def test_a_chunk_larger_than_the_cache_is_served_not_kept() -> None:
    cache = ChunkCache(50)
    assert cache.get("big", lambda: chunk(1)).size == 100
    assert cache.nbytes == 0 and cache.misses == 1
    cache.get("big", lambda: chunk(1))
    assert cache.misses == 2


def test_kept_chunks_are_read_only() -> None:
    cache = ChunkCache(1000)
    kept = cache.get("a", lambda: chunk(1))
    with pytest.raises(ValueError):
        kept[0] = 2


def test_an_error_reaches_every_waiting_asker_and_is_not_kept() -> None:
    """(One decode for concurrent askers of a chunk that decodes: test_omezarr.py.)"""
    cache = ChunkCache(1000)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_failure() -> np.ndarray:
        calls.append(1)
        started.set()
        release.wait(5)
        raise OSError("damaged")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get("x", slow_failure)
        except OSError as exc:
            errors.append(exc)

    first = threading.Thread(target=ask)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=ask) for _ in range(3)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    # Every asker sees the error: the waiters get the first decode's, any thread that came
    # after it ended decodes again (a failure is not kept) and fails the same way.
    assert calls and len(errors) == 4
    assert cache.get("x", lambda: chunk(3))[0] == 3  # a failure is not kept
