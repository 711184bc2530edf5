"""A per-process cache of fixed-size, aligned blocks of remote files.

Blocks are keyed by (file key, block index), where the file key names the file's
content version, so a replaced file is never read through blocks of its older
content. The cache is an LRU bounded in bytes. A block that one thread is fetching is
awaited, not fetched again, by every other thread that needs it; the blocks a read
lacks are fetched in runs of consecutive blocks, one request per run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

BlockKey = tuple[str, int]
# fetch(first, stop) -> the blocks first .. stop - 1, in order.
Fetch = Callable[[int, int], list[bytes]]


@dataclass
class BlockCacheStats:
    hits: int = 0
    misses: int = 0  # blocks fetched by this process
    waits: int = 0  # blocks another thread was already fetching
    evictions: int = 0


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, capacity_bytes)
        self.stats = BlockCacheStats()
        self._blocks: OrderedDict[BlockKey, bytes] = OrderedDict()
        self._bytes = 0
        self._pending: dict[BlockKey, Future[bytes]] = {}
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def blocks(self, file_key: str, first: int, last: int, fetch: Fetch) -> list[bytes]:
        """Blocks ``first`` .. ``last`` (inclusive) of one file, fetching what is missing."""
        found, waiting, mine = self._claim(file_key, first, last)
        try:
            for start, stop in runs(mine):
                fetched = fetch(start, stop)
                if len(fetched) != stop - start:
                    raise ValueError("a block fetch returned the wrong number of blocks")
                for index, data in zip(range(start, stop), fetched, strict=True):
                    found[index] = data
                    self._store((file_key, index), data)
        except BaseException as exc:
            # What this thread claimed and could not fetch fails for its waiters too.
            self._abandon(file_key, [i for i in mine if i not in found], exc)
            raise
        for index, future in waiting.items():
            found[index] = future.result()
        return [found[index] for index in range(first, last + 1)]

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0

    # -- internals ----------------------------------------------------------------------------
    def _claim(
        self, file_key: str, first: int, last: int
    ) -> tuple[dict[int, bytes], dict[int, Future[bytes]], list[int]]:
        found: dict[int, bytes] = {}
        waiting: dict[int, Future[bytes]] = {}
        mine: list[int] = []
        with self._lock:
            for index in range(first, last + 1):
                key = (file_key, index)
                data = self._blocks.get(key)
                if data is not None:
                    self._blocks.move_to_end(key)
                    found[index] = data
                    self.stats.hits += 1
                elif key in self._pending:
                    waiting[index] = self._pending[key]
                    self.stats.waits += 1
                else:
                    self._pending[key] = Future()
                    mine.append(index)
                    self.stats.misses += 1
        return found, waiting, mine

    def _store(self, key: BlockKey, data: bytes) -> None:
        with self._lock:
            future = self._pending.pop(key, None)
            if len(data) <= self.capacity_bytes and key not in self._blocks:
                self._blocks[key] = data
                self._bytes += len(data)
                while self._bytes > self.capacity_bytes:
                    _old, evicted = self._blocks.popitem(last=False)
                    self._bytes -= len(evicted)
                    self.stats.evictions += 1
        if future is not None:
            future.set_result(data)

    def _abandon(self, file_key: str, indices: list[int], error: BaseException) -> None:
        with self._lock:
            futures = [self._pending.pop((file_key, index), None) for index in indices]
        for future in futures:
            if future is not None:
                future.set_exception(error)


def runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of consecutive indices (ascending input)."""
    if not indices:
        return
    start = previous = indices[0]
    for index in indices[1:]:
        if index != previous + 1:
            yield start, previous + 1
            start = index
        previous = index
    yield start, previous + 1
