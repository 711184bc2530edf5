"""A URL prefix registered as one image (``s3://bucket/image.zarr/``): an OME-Zarr store
whose keys are objects below it. Like a local directory source it has no bytes of its
own; its reader fetches keys through it (:meth:`RemotePrefix.get`, whole;
:meth:`RemotePrefix.member`, by range), with the client's error mapping.

- **Confinement**: a key is joined to the prefix as a URL path and parsed as one
  (common/remoteurls.py: no ``..``, ``.``, empty segments, encoded ``/``, control
  characters), and must still lie below the prefix -- which the allow-list covers (it
  was checked when the prefix was opened). A key that would leave it is a 422.
- **Root documents**: listing a bucket needs a permission reading does not (and HTTP
  servers list nothing), so :meth:`RemotePrefix.entries` answers which of the metadata
  documents a store keeps at its root exist -- what readers look at to recognise a
  directory source. They are fetched together (one round trip's wait, not four) and
  name the prefix's version: :attr:`RemotePrefix.content_key`, a digest of its URL and
  their bytes.
- **Other small documents** (an array's ``.zarray``/``zarr.json``, a well's
  ``.zattrs``) are kept for as long as the prefix is open and shared through the cache
  Redis under that version (``TILECAST_REMOTE_BLOCK_TTL``), absent ones too: another
  process opening the store pays its root documents' round trip and then reads the rest
  from Redis. A store rewritten in place with the same root documents but other array
  metadata is therefore seen after that TTL at the latest (its chunks are always read
  afresh).
- **Chunks** are fetched whole, one request each, never shared (a tile is rendered once
  and then cached as a tile); a member read by range (a shard's index and inner chunks)
  costs one HEAD, then blocks through the block cache, conditional on its ETag.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from tilecast.common.errors import RemoteNotFound, SourceRefused, UnsupportedImage
from tilecast.common.keys import remote_document_key
from tilecast.common.remoteurls import RemoteUrl
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.remote.objects import ObjectClient, ObjectFile, ObjectInfo
from tilecast.workers.remote.shared import SharedBlocks
from tilecast.workers.sources.files import FileTooLarge, KeyedDirectory

# What a zarr store (v2 or v3) keeps at its root; OME-Zarr readers recognise it by them.
ROOT_DOCUMENTS = (".zattrs", ".zgroup", ".zmetadata", "zarr.json")
# A metadata document read whole: the OME-Zarr reader's bound on one.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# The members (objects read by range) whose HEAD answer a prefix remembers.
MAX_MEMBERS = 4096
# In Redis: a document's bytes after PRESENT; ABSENT alone for a key the store lacks.
PRESENT, ABSENT = b"+", b"-"


class RemotePrefix(KeyedDirectory):
    def __init__(
        self,
        client: ObjectClient,
        url: RemoteUrl,
        blocks: BlockCache,
        block_size: int,
        shared: SharedBlocks | None = None,
    ) -> None:
        super().__init__()
        self.name = str(url)
        self.size = 0
        self.url = url
        self.client = client
        self._blocks = blocks
        self._block_size = block_size
        self._shared = shared
        self._documents: dict[str, bytes | None] = {}
        self._members: OrderedDict[str, ObjectInfo | None] = OrderedDict()
        self._lock = threading.Lock()
        self._content_key: str | None = None

    # -- keys -------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        """The object key of ``name`` below the prefix; UnsupportedImage for a name that
        is no path below it."""
        try:
            child = self.url.child(name)
        except SourceRefused:
            child = None
        if child is None or not self.url.covers(child) or child.path == self.url.path:
            raise UnsupportedImage("the image's metadata names a path outside its store")
        return child.key

    # -- root documents -------------------------------------------------------------------
    def documents(self) -> dict[str, bytes | None]:
        """Every root document (None for the absent ones), fetched once, together."""
        with self._lock:
            missing = [name for name in ROOT_DOCUMENTS if name not in self._documents]
        if missing:
            with ThreadPoolExecutor(len(missing)) as pool:
                fetched = pool.map(self._fetch_document, missing)
                found = dict(zip(missing, fetched, strict=True))
            with self._lock:
                for name, data in found.items():
                    self._documents.setdefault(name, data)
        with self._lock:
            return {name: self._documents[name] for name in ROOT_DOCUMENTS}

    def document(self, name: str) -> bytes | None:
        """A root document's bytes (None when absent)."""
        return self.documents()[name]

    def _fetch_document(self, name: str) -> bytes | None:
        return self.client.get_small(self.key(name), MAX_DOCUMENT_BYTES)

    def entries(self, limit: int) -> list[str]:
        found = self.documents()
        return sorted(name for name in ROOT_DOCUMENTS if found[name] is not None)[:limit]

    @property
    def content_key(self) -> str:
        """A name of the prefix as it is: its URL and its root documents' bytes."""
        if self._content_key is None:
            digest = hashlib.sha256(str(self.url).encode() + b"\0")
            for name, data in self.documents().items():
                digest.update(name.encode() + b"\0" + (data if data is not None else b"-") + b"\0")
            self._content_key = digest.hexdigest()[:32]
        return self._content_key

    # -- reading keys -----------------------------------------------------------------------
    def get(self, key: str, limit: int, share: bool = False) -> bytes | None:
        if key in ROOT_DOCUMENTS:
            data = self.document(key)
            if data is not None and len(data) > limit:
                raise FileTooLarge(f"{key} is larger than {limit} bytes")
            return data
        if not share:
            return self.client.get_small(self.key(key), limit)
        with self._lock:
            if key in self._documents:
                return self._documents[key]
        data = self._shared_document(key, limit)
        with self._lock:
            return self._documents.setdefault(key, data)

    def _shared_document(self, key: str, limit: int) -> bytes | None:
        """A small document from the cache Redis, else from the store (then shared)."""
        object_key = self.key(key)
        if self._shared is None:
            return self.client.get_small(object_key, limit)
        redis_key = remote_document_key(self.content_key, key)
        held = self._shared.values([redis_key])[0]
        if held is not None and held[:1] in (PRESENT, ABSENT) and len(held) <= limit + 1:
            return held[1:] if held[:1] == PRESENT else None
        data = self.client.get_small(object_key, limit)
        self._shared.put_values({redis_key: ABSENT if data is None else PRESENT + data})
        return data

    def member(self, key: str) -> ObjectFile | None:
        object_key = self.key(key)
        with self._lock:
            known = key in self._members
            info = self._members.get(key)
            if known:
                self._members.move_to_end(key)
        if not known:
            try:
                info = self.client.head(object_key)
            except RemoteNotFound:
                info = None
            with self._lock:
                self._members[key] = info
                while len(self._members) > MAX_MEMBERS:
                    self._members.popitem(last=False)
        if info is None:
            return None
        return ObjectFile(self.client, object_key, info, self._blocks, self._block_size)
