"""A read-only zarr store over a :class:`KeyedDirectory` -- a URL prefix in an object store
or behind HTTP (workers/remote/prefix.py) -- bounded like the local ones
(workers/sources/zarrstore.py): a key outside the store, a metadata document larger than
``MAX_METADATA_BYTES``, a chunk of an array the reader has not registered or larger than
any encoding of its pixels is refused before it is fetched, and a compressed chunk whose
stream declares more bytes than its chunk holds before zarr decodes it.

Metadata documents are asked for as shared (the directory keeps them, and shares them
with other processes); chunks are fetched whole, one request each; a read of part of a
key (a shard's index, an inner chunk) goes through the directory's ranged member file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.sources.files import FileTooLarge, KeyedDirectory
from tilecast.workers.sources.zarrstore import (
    METADATA_NAMES,
    ChunkLimits,
    ThreadedReads,
    range_length,
    range_start,
    safe_key,
    too_large,
)


class PrefixStore(ThreadedReads, Store):
    """zarr's view of a keyed directory: reads only, a thread per read (zarr gathers the
    documents of an array, and the inner chunks of a shard, concurrently: their round
    trips overlap)."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = False

    def __init__(self, directory: KeyedDirectory, limits: ChunkLimits) -> None:
        super().__init__(read_only=True)
        self.directory = directory
        self.limits = limits

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixStore) and other.directory is self.directory

    def __hash__(self) -> int:
        return id(self.directory)

    def with_read_only(self, read_only: bool = False) -> PrefixStore:
        return self

    def read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """The bytes of ``key`` (None when absent), within the bounds."""
        safe_key(key)
        limit = self.limits.limit(key, byte_range)
        if byte_range is None:
            share = key.rsplit("/", 1)[-1] in METADATA_NAMES
            try:
                data = self.directory.get(key, limit, share=share)
            except FileTooLarge:
                raise UnsupportedImage(too_large(key)) from None
        else:
            member = self.directory.member(key)
            if member is None:
                return None
            wanted = range_length(byte_range, member.size)
            if wanted > limit:
                raise UnsupportedImage(too_large(key))
            data = member.read(range_start(byte_range, member.size), wanted)
        if data is not None:
            self.limits.check(key, data, byte_range)
        return data

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return list(
            await asyncio.gather(
                *(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)
            )
        )

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def set(self, key: str, value: Buffer) -> None:
        raise UnsupportedImage("a remote store is read only")

    async def delete(self, key: str) -> None:
        raise UnsupportedImage("a remote store is read only")

    def list(self) -> AsyncIterator[str]:
        raise NotImplementedError("a remote prefix is not listed")

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        raise NotImplementedError("a remote prefix is not listed")

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        raise NotImplementedError("a remote prefix is not listed")
