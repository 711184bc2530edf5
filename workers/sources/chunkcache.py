"""A small per-reader cache of decoded chunks, shared by the tiles that need them.

A chunked format (OME-Zarr) stores its pixels in chunks that need not line up with the
tiles tilecast serves: a 512 x 512 tile of a store chunked 300 x 300 overlaps four chunks,
and each of those chunks is overlapped by up to four tiles; a chunk spanning several
channels or planes serves the tiles of several frames. Decoding a chunk once for all of
them is what this cache is for: a least-recently-used set of decoded chunks bounded by
their bytes, and single flight -- a chunk several threads ask for at once is decoded by
the first of them while the others wait for its result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class _Pending:
    """A chunk being decoded by one thread, waited for by the others."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: np.ndarray | None = None
        self.error: BaseException | None = None


class ChunkCache:
    """Decoded chunks by key, at most ``capacity`` bytes of them (a chunk larger than
    that is handed out and not kept). Thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The chunk under ``key``, decoded by ``load()`` when it is not held. An error
        ``load`` raises reaches every thread that waited for it, and nothing is kept."""
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                self.hits += 1
                return chunk
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self.misses += 1
        assert pending is not None
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.value is not None
            return pending.value
        try:
            chunk = load()
        except BaseException as exc:
            pending.error = exc
            raise
        else:
            pending.value = chunk
            self._keep(key, chunk)
            return chunk
        finally:
            with self._lock:
                del self._pending[key]
            pending.done.set()

    def _keep(self, key: Hashable, chunk: np.ndarray) -> None:
        if chunk.nbytes > self.capacity:
            return
        # Read-only: a tile that shares a chunk must not be able to alter it for the next.
        chunk.flags.writeable = False
        with self._lock:
            self._chunks[key] = chunk
            self._bytes += chunk.nbytes
            while self._bytes > self.capacity:
                _, dropped = self._chunks.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._bytes = 0
