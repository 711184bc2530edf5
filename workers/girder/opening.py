"""``open_girder_file``: a Girder item's image file, read the cheapest way available.

1. a direct path, when ``girder_path_map`` is set and the worker sees the file;
2. HTTP range reads through the process's block cache and the blocks all processes
   share in the cache Redis (workers/girder/shared.py);
3. when Girder ignores Range, a whole download into the bounded download cache.

Each worker process keeps one :class:`GirderReader` per settings: its pooled
connection, token and block cache outlive sources. A forked child starts afresh.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import BinaryIO

import requests

from tilecast.common.errors import GirderUnavailable, UnknownSource
from tilecast.common.girder import is_object_id
from tilecast.common.settings import Settings
from tilecast.workers.girder.client import GirderConnection, GirderHttpError
from tilecast.workers.girder.items import GirderFileInfo, resolve_item
from tilecast.workers.girder.pathmap import direct_file, log_once, parse_path_map
from tilecast.workers.girder.remote import RangeNotSupported, RemoteFile
from tilecast.workers.girder.shared import SharedTier
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.remote.downloads import DownloadCache
from tilecast.workers.sources.files import ImageFile, LocalFile

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 1024 * 1024
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass
class GirderImage:
    """An opened Girder image file; ``how`` is "path", "range" or "download"."""

    file: ImageFile
    info: GirderFileInfo
    how: str

    @property
    def item_name(self) -> str:
        return self.info.item_name


class GirderReader:
    def __init__(self, settings: Settings) -> None:
        self.connection = GirderConnection(settings)
        self.blocks = BlockCache(settings.girder_block_cache_bytes)
        self.block_size = settings.girder_block_size
        block_ttl, file_ttl = settings.girder_block_ttl, settings.girder_file_ttl
        self.shared = (
            SharedTier(settings.cache_url, block_ttl, file_ttl, self.block_size)
            if block_ttl > 0 or file_ttl > 0
            else None
        )
        # The file each item resolved to when last opened for a describe, until the
        # describe task knows the generation it registered (see remember_registration).
        self._described: dict[str, GirderFileInfo] = {}
        self._described_lock = threading.Lock()
        self.downloads = DownloadCache(
            settings.girder_download_dir,
            settings.girder_download_cache_bytes,
            place="Girder",
            unavailable=GirderUnavailable,
        )
        self.prefixes = parse_path_map(settings.girder_path_map)

    def open(self, item_id: str, generation: int | None = None) -> GirderImage:
        """The item's file; for a render, ``generation`` is the registration it reads."""
        if not is_object_id(item_id):
            raise UnknownSource.girder_item(item_id)
        info = self._resolve(item_id, generation)
        if self.prefixes:
            direct = direct_file(self.connection, info, self.prefixes)
            if direct is not None:
                return GirderImage(direct, info, "path")
        remote = RemoteFile(info, self.connection, self.blocks, self.block_size, self.shared)
        try:
            # The header every reader needs first (shared); probes Range support.
            remote.prefetch(0, 16)
        except RangeNotSupported:
            log_once("no-range", "Girder at %s ignores Range: downloading whole files",
                     self.connection.api_url)  # fmt: skip
            return GirderImage(self._downloaded(info), info, "download")
        return GirderImage(remote, info, "range")

    def remember_registration(self, item_id: str, generation: int) -> None:
        """The describe task registered ``item_id`` under ``generation``: what it just
        resolved is the file that generation reads."""
        with self._described_lock:
            info = self._described.pop(item_id, None)
        if info is not None and self.shared is not None:
            self.shared.put_file_info(generation, info)

    def _resolve(self, item_id: str, generation: int | None) -> GirderFileInfo:
        if generation is not None and self.shared is not None:
            known = self.shared.file_info(item_id, generation)
            if known is not None and known.item_id == item_id:
                return known
        info = resolve_item(self.connection, item_id)
        if generation is None:
            with self._described_lock:
                self._described[item_id] = info
        elif self.shared is not None:
            self.shared.put_file_info(generation, info)
        return info

    def _downloaded(self, info: GirderFileInfo) -> LocalFile:
        suffix = os.path.splitext(info.name)[1]
        name = f"{info.file_id}-{info.version}{suffix if SAFE_SUFFIX.match(suffix) else ''}"

        def download(output: BinaryIO) -> None:
            self._download_whole(info, output)

        path = self.downloads.local_copy(name, info.size, download)
        file = LocalFile(path)
        file.name = f"girder file {info.file_id} ({info.name}, downloaded)"
        return file

    def _download_whole(self, info: GirderFileInfo, output: BinaryIO) -> None:
        try:
            response = self.connection.get_raw(f"file/{info.file_id}/download", {})
        except GirderHttpError as exc:
            if exc.status in (400, 403, 404):
                raise UnknownSource(f"the file of Girder item {info.item_id} is gone") from None
            raise GirderUnavailable(f"Girder answered {exc.status} to a download") from None
        with response:
            try:
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    output.write(chunk)
            except requests.RequestException as exc:
                log.warning("downloading Girder file %s failed: %s", info.file_id, exc)
                raise GirderUnavailable("Girder stopped answering during a download") from None

    def close(self) -> None:
        self.connection.close()
        self.blocks.clear()
        if self.shared is not None:
            self.shared.close()


_readers: dict[Settings, GirderReader] = {}
_readers_lock = threading.Lock()


def girder_reader(settings: Settings) -> GirderReader:
    """This process's reader for ``settings``."""
    with _readers_lock:
        reader = _readers.get(settings)
        if reader is None:
            reader = _readers[settings] = GirderReader(settings)
        return reader


def open_girder_file(
    item_id: str, settings: Settings, generation: int | None = None
) -> GirderImage:
    """The image file of Girder item ``item_id`` (and its item's name) that the item's
    registration ``generation`` reads (None: as Girder has it now, to describe it).
    UnknownSource for unknown items, UnsupportedImage for items without an image file,
    GirderUnavailable when Girder does not answer in ``girder_timeout``."""
    return girder_reader(settings).open(item_id, generation)


def remember_registration(item_id: str, settings: Settings, generation: int) -> None:
    """Called once the describe task registered ``item_id`` under ``generation``."""
    girder_reader(settings).remember_registration(item_id, generation)


def forget_readers() -> None:
    """Drop every reader (tests; and a forked child, whose sockets are its parent's)."""
    global _readers_lock
    _readers.clear()
    _readers_lock = threading.Lock()


os.register_at_fork(after_in_child=forget_readers)
