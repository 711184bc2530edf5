"""A URL prefix registered as one image (``s3://bucket/image.zarr/``): an OME-Zarr store
whose keys are objects below it. Like a local directory source it has no bytes of its
own; its reader reads keys through :meth:`RemotePrefix.get`.

Listing a bucket needs a permission reading does not (and HTTP servers list nothing),
so :meth:`RemotePrefix.entries` answers which of the metadata documents a store keeps
at its root exist -- what the readers look at to recognise a directory source.
"""

from __future__ import annotations

from tilecast.common.remoteurls import RemoteUrl
from tilecast.workers.remote.objects import ObjectClient
from tilecast.workers.sources.files import ImageFile

# What a zarr store (v2 or v3) keeps at its root; OME-Zarr readers recognise it by them.
ROOT_DOCUMENTS = (".zattrs", ".zgroup", ".zmetadata", "zarr.json")
# A metadata document read whole: the OME-Zarr reader's bound on one.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class RemotePrefix(ImageFile):
    is_directory = True

    def __init__(self, client: ObjectClient, url: RemoteUrl) -> None:
        super().__init__()
        self.name = str(url)
        self.size = 0
        self.url = url
        self.client = client
        self._documents: dict[str, bytes | None] = {}

    def read(self, offset: int, count: int) -> bytes:
        return b""

    def key(self, name: str) -> str:
        """The object key of ``name`` below the prefix."""
        return self.url.key + name

    def document(self, name: str) -> bytes | None:
        """A root document's bytes (None when absent), fetched once."""
        if name not in self._documents:
            self._documents[name] = self.client.get_small(self.key(name), MAX_DOCUMENT_BYTES)
        return self._documents[name]

    def entries(self, limit: int) -> list[str]:
        return sorted(name for name in ROOT_DOCUMENTS if self.document(name) is not None)[:limit]
