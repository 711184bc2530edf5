"""``open_remote``: a URL source's object (or prefix), read the cheapest way available.

1. an object: range reads through the process's block cache and the blocks every
   process shares in the cache Redis (workers/remote/ranged.py), each conditional on
   the version opened;
2. an HTTP server that ignores Range: the whole object, once, into the bounded download
   cache shared by the host's processes (workers/remote/downloads.py); the same cache
   serves readers whose library opens local files only (``ImageFile.local_copy``:
   OpenSlide, libCZI);
3. a prefix (``.../image.zarr/``): a :class:`RemotePrefix` whose keys its reader gets.

The URL is checked against the allow-list again on every opening: a record registered
before the list changed is no longer read. Each worker process keeps one
:class:`RemoteReader` per settings (clients, block cache); a forked child starts afresh
(obstore's runtime and pooled sockets are not fork-safe).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import BinaryIO

from tilecast.common.errors import RemoteUnavailable, SourceRefused, UnsupportedImage
from tilecast.common.fileidentity import Identity
from tilecast.common.keys import remote_block_key
from tilecast.common.remoteurls import (
    HTTP_SCHEMES,
    RemoteSource,
    RemoteUrl,
    check_allowed,
)
from tilecast.common.settings import Settings
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.remote.downloads import DownloadCache, default_download_dir
from tilecast.workers.remote.objects import (
    ObjectClient,
    ObjectFile,
    ObjectInfo,
    RangeNotSupported,
)
from tilecast.workers.remote.prefix import RemotePrefix
from tilecast.workers.remote.shared import SharedBlocks
from tilecast.workers.sources.files import ImageFile, LocalFile

log = logging.getLogger(__name__)

SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass
class OpenedRemote:
    """An opened URL source; ``how`` is "range", "download" or "prefix"."""

    file: ImageFile
    identity: Identity
    how: str

    def replaced(self) -> bool:
        """Whether a read found the object replaced since it was opened."""
        return bool(getattr(self.file, "changed", False))

    @property
    def name(self) -> str:
        path = self.identity["url"].rstrip("/")
        return path.rsplit("/", 1)[-1] or path


class RemoteReader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.blocks = BlockCache(settings.remote_block_cache_bytes)
        self.block_size = settings.remote_block_size
        self.shared = (
            SharedBlocks(
                settings.cache_url, settings.remote_block_ttl, self.block_size, remote_block_key
            )
            if settings.remote_block_ttl > 0
            else None
        )
        self.downloads = DownloadCache(
            settings.remote_download_dir or default_download_dir("tilecast-remote"),
            settings.remote_download_cache_bytes,
            place="the store",
            unavailable=RemoteUnavailable,
        )
        self._clients: dict[tuple[object, ...], ObjectClient] = {}
        self._lock = threading.Lock()

    def open(self, source: RemoteSource) -> OpenedRemote:
        check_still_allowed(source, self.settings)
        client = self.client(source)
        if source.url.is_prefix:
            prefix = RemotePrefix(client, source.url, self.blocks, self.block_size, self.shared)
            identity = {"url": str(prefix.url), "documents": prefix.content_key}
            return OpenedRemote(prefix, identity, "prefix")
        info = client.head(source.url.key)
        file = RemoteObjectFile(self, client, source.url.key, info)
        try:
            # The header every reader needs first (shared); probes Range support.
            file.prefetch(0, 16)
        except RangeNotSupported:
            log.warning("%s ignores Range: downloading whole objects", client.place)
            return OpenedRemote(self.downloaded(file), info.identity(), "download")
        return OpenedRemote(file, info.identity(), "range")

    def client(self, source: RemoteSource) -> ObjectClient:
        """The process's client of the source's bucket (or host) and options."""
        url = source.url
        key = (url.scheme, url.host, url.port, source.options)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = _new_client(url, source, self.settings)
            return client

    def downloaded(self, file: ObjectFile) -> LocalFile:
        """The object in the download cache (fetched whole unless it is there)."""
        local = LocalFile(self.local_copy(file))
        local.name = f"{file.info.url} (downloaded)"
        return local

    def local_copy(self, file: ObjectFile) -> str:
        info = file.info
        suffix = os.path.splitext(info.url)[1]
        name = f"{info.content_key}{suffix if SAFE_SUFFIX.match(suffix) else ''}"

        def download(output: BinaryIO) -> None:
            for chunk in file.client.get_whole(file.object_key, info):
                output.write(chunk)

        return self.downloads.local_copy(name, info.size, download)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self.blocks.clear()
        if self.shared is not None:
            self.shared.close()


class RemoteObjectFile(ObjectFile):
    """An object read by range that can also be downloaded whole, for libraries that
    open local files only."""

    def __init__(
        self, reader: RemoteReader, client: ObjectClient, key: str, info: ObjectInfo
    ) -> None:
        super().__init__(client, key, info, reader.blocks, reader.block_size, reader.shared)
        self._reader = reader

    def local_copy(self) -> str | None:
        return self._reader.local_copy(self)


def check_still_allowed(source: RemoteSource, settings: Settings) -> None:
    """UnsupportedImage (422) when the allow-list no longer covers ``source``: not the
    request's fault, the list changed since the source was registered."""
    try:
        check_allowed(source.url, settings.remote_allowed)
    except SourceRefused as exc:
        raise UnsupportedImage(f"the source's URL cannot be read: {exc.message}") from None


def _new_client(url: RemoteUrl, source: RemoteSource, settings: Settings) -> ObjectClient:
    if url.scheme in HTTP_SCHEMES:
        from tilecast.workers.remote.httpobjects import HttpClient

        return HttpClient(url, settings)
    # Imported here: a site without object stores needs no obstore.
    from tilecast.workers.remote.obstores import ObstoreClient

    return ObstoreClient(url.scheme, url.host, source.options, settings)


_readers: dict[Settings, RemoteReader] = {}
_readers_lock = threading.Lock()


def remote_reader(settings: Settings) -> RemoteReader:
    """This process's reader for ``settings``."""
    with _readers_lock:
        reader = _readers.get(settings)
        if reader is None:
            reader = _readers[settings] = RemoteReader(settings)
        return reader


def open_remote(source: RemoteSource, settings: Settings) -> OpenedRemote:
    """The object or prefix ``source`` names. RemoteNotFound, RemoteForbidden,
    RemoteUnavailable, RemoteThrottled as the store answers; UnsupportedImage when the
    URL is no longer allowed."""
    return remote_reader(settings).open(source)


def forget_readers() -> None:
    """Drop every reader (tests; and a forked child, whose sockets are its parent's)."""
    global _readers_lock
    _readers.clear()
    _readers_lock = threading.Lock()


os.register_at_fork(after_in_child=forget_readers)
