"""A remote file read by byte ranges, through the process's block cache and then the
blocks shared in the cache Redis: opening a multi-gigabyte file and reading its first
tile costs the few blocks holding its directories and that tile, never the whole file.

Subclasses say how one range is fetched (:meth:`RangedFile.fetch_range`): a Girder
file's ``/file/{id}/download`` (workers/girder/remote.py), an object in an object store
or behind HTTP (workers/remote/objects.py). Blocks are aligned to ``block_size``; the
blocks a read lacks are fetched in runs of consecutive blocks, one request per run, and
a block another thread is fetching is awaited, not fetched again
(workers/remote/blocks.py).

Only what readers announce with :meth:`prefetch` (a TIFF's directories, which every
process opening the file needs) is shared: a tile's block is rendered once and then
cached as a tile, so sharing it would only fill the cache Redis with file content.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from dataclasses import dataclass

from tilecast.workers.remote.blocks import BlockCache, runs
from tilecast.workers.remote.shared import SharedBlocks
from tilecast.workers.sources.files import ImageFile


@dataclass
class FetchStats:
    """What a file cost its remote store, for tests and benchmarks."""

    requests: int = 0
    bytes: int = 0


class RangedFile(ImageFile):
    def __init__(
        self,
        key: str,
        size: int,
        blocks: BlockCache,
        block_size: int,
        shared: SharedBlocks | None = None,
    ) -> None:
        """``key`` names the file's content version: blocks are cached under it."""
        super().__init__()
        self.size = size
        self.fetched = FetchStats()
        self._key = key
        self._blocks = blocks
        self._block_size = max(1, block_size)
        self._shared = shared
        self._stats_lock = threading.Lock()

    @abstractmethod
    def fetch_range(self, start: int, end: int) -> bytes:
        """Bytes ``start`` .. ``end`` (inclusive) in one request: all of them, or an
        error (a tilecast error naming what the remote store did)."""

    def read(self, offset: int, count: int) -> bytes:
        count = min(count, self.size - offset)
        if offset < 0 or count <= 0:
            return b""
        size = self._block_size
        first, last = offset // size, (offset + count - 1) // size
        parts = self._blocks.blocks(self._key, first, last, self._fetch)
        start = offset - first * size
        if len(parts) == 1:
            return parts[0][start : start + count]
        return b"".join(parts)[start : start + count]

    def prefetch(self, offset: int, count: int) -> None:
        count = min(count, self.size - offset)
        if offset >= 0 and count > 0:
            size = self._block_size
            first, last = offset // size, (offset + count - 1) // size
            self._blocks.blocks(self._key, first, last, self._fetch_and_share)

    def _fetch_and_share(self, first: int, stop: int) -> list[bytes]:
        return self._fetch(first, stop, share=True)

    def _fetch(self, first: int, stop: int, *, share: bool = False) -> list[bytes]:
        """Blocks ``first`` .. ``stop - 1``: those Redis lacks in one ranged request per run."""
        indices = range(first, stop)
        shared = self._shared.blocks(self._key, indices) if self._shared else [None] * len(indices)
        found = {
            index: data
            for index, data in zip(indices, shared, strict=True)
            if data is not None and len(data) == self._block_length(index)
        }
        fetched: dict[int, bytes] = {}
        for start, end in runs([i for i in indices if i not in found]):
            fetched.update(zip(range(start, end), self._fetch_run(start, end), strict=True))
        if self._shared and share and fetched:
            self._shared.put_blocks(self._key, fetched)
        found.update(fetched)
        return [found[index] for index in indices]

    def _fetch_run(self, first: int, stop: int) -> list[bytes]:
        """Blocks ``first`` .. ``stop - 1`` in one ranged request."""
        start = first * self._block_size
        end = min(self.size, stop * self._block_size) - 1
        body = self.fetch_range(start, end)
        with self._stats_lock:
            self.fetched.requests += 1
            self.fetched.bytes += len(body)
        size = self._block_size
        return [body[i : i + size] for i in range(0, len(body), size)]

    def _block_length(self, index: int) -> int:
        return min(self._block_size, self.size - index * self._block_size)
