"""An object of a URL source: what identifies its content, how its bytes are fetched.

An :class:`ObjectInfo` is what a HEAD (or its object store's equivalent) says: size,
ETag, version id, last modification. Its :attr:`ObjectInfo.content_key` names that
content: blocks are cached locally and in Redis under it, and every range request is
conditional on it (``If-Match`` the ETag, or the version id), so a replaced object is
never read through blocks of the old one, nor mixed with it within one read: the store
answers 412 and the read fails with :class:`ObjectChanged`.

An :class:`ObjectClient` reads objects of one bucket (or one HTTP host) with one set of
options: workers/remote/obstores.py (S3, GCS, Azure through obstore) and
workers/remote/httpobjects.py (HTTP(S) through requests).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from tilecast.common.errors import SourceChanged
from tilecast.common.fileidentity import Identity
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.remote.ranged import RangedFile
from tilecast.workers.remote.shared import SharedBlocks


class ObjectChanged(SourceChanged):
    """The object was replaced (or shrank) while it was read: the store refused a
    request conditional on the version that was opened."""


class RangeNotSupported(Exception):
    """The server answered a range request with the whole object (HTTP servers that
    ignore Range): read it from the download cache instead."""


@dataclass(frozen=True)
class ObjectInfo:
    url: str
    size: int
    etag: str | None = None
    version: str | None = None
    last_modified: str | None = None

    @property
    def content_key(self) -> str:
        """A name of this content: the URL, size and whatever version the store gives."""
        canonical = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:32]

    def identity(self) -> Identity:
        """The record's identity (common/fileidentity.py): a replaced object has another
        ETag, version id or modification time (a store without ETags: its size and time)."""
        return {
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "version": self.version,
            "last_modified": self.last_modified if self.etag is None else None,
        }


class ObjectClient(ABC):
    """Reads objects of one bucket or host. Keys are paths without their leading ``/``."""

    place: str  # "s3://bucket", "https://host": for messages

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """The object's size and version; RemoteNotFound, RemoteForbidden,
        RemoteUnavailable, RemoteThrottled."""

    @abstractmethod
    def get_range(self, key: str, info: ObjectInfo, start: int, end: int) -> bytes:
        """Bytes ``start`` .. ``end`` (inclusive) of the version ``info`` names: all of
        them, or an error (ObjectChanged, RemoteTruncated, RangeNotSupported, ...)."""

    @abstractmethod
    def get_whole(self, key: str, info: ObjectInfo) -> Iterator[bytes]:
        """The whole object of version ``info``, in chunks (the download cache)."""

    @abstractmethod
    def get_small(self, key: str, limit: int) -> bytes | None:
        """A small object whole (None when there is none; FileTooLarge past ``limit``
        bytes, before they are read): the documents and chunks of a store under a prefix."""

    def close(self) -> None:  # noqa: B027  (most clients hold nothing to release)
        """Release connections."""


class ObjectFile(RangedFile):
    """An object read by ranges through the block caches."""

    def __init__(
        self,
        client: ObjectClient,
        key: str,
        info: ObjectInfo,
        blocks: BlockCache,
        block_size: int,
        shared: SharedBlocks | None = None,
    ) -> None:
        super().__init__(info.content_key, info.size, blocks, block_size, shared)
        self.name = info.url
        self.info = info
        self.client = client
        self.object_key = key
        self.changed = False

    def fetch_range(self, start: int, end: int) -> bytes:
        try:
            return self.client.get_range(self.object_key, self.info, start, end)
        except ObjectChanged:
            # Renders of this open source must stop: the source cache drops it when it
            # asks whether it is still current (workers/filechanges.py).
            self.changed = True
            raise
