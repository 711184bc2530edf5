"""A Girder file read by HTTP range requests of ``/file/{id}/download``, through the
process's block cache and then the blocks shared in the cache Redis: opening a
multi-gigabyte file and reading its first tile costs the few blocks holding its
directories and that tile, never the whole download.

Only what readers announce with :meth:`prefetch` (a TIFF's directories, which every
process opening the file needs) is shared: a tile's block is rendered once and then
cached as a tile, so sharing it would only fill the cache Redis with file content.
"""

from __future__ import annotations

import logging
import re

import requests

from tilecast.common.errors import GirderUnavailable, UnknownSource
from tilecast.workers.girder.blocks import BlockCache, runs
from tilecast.workers.girder.client import GirderConnection, GirderHttpError
from tilecast.workers.girder.items import GirderFileInfo
from tilecast.workers.girder.shared import SharedTier
from tilecast.workers.sources.files import ImageFile

log = logging.getLogger(__name__)

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RangeNotSupported(GirderUnavailable):
    """Girder (or a proxy before it) answered a range request with the whole file."""


class RemoteFile(ImageFile):
    def __init__(
        self,
        info: GirderFileInfo,
        connection: GirderConnection,
        blocks: BlockCache,
        block_size: int,
        shared: SharedTier | None = None,
    ) -> None:
        super().__init__()
        self.info = info
        self.name = f"girder file {info.file_id} ({info.name})"
        self.size = info.size
        self._connection = connection
        self._blocks = blocks
        self._block_size = max(1, block_size)
        self._shared = shared
        self._key = f"{info.file_id}:{info.version}"

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
        body = self._download_range(start, end)
        size = self._block_size
        return [body[i : i + size] for i in range(0, len(body), size)]

    def _block_length(self, index: int) -> int:
        return min(self._block_size, self.size - index * self._block_size)

    def _download_range(self, start: int, end: int) -> bytes:
        path = f"file/{self.info.file_id}/download"
        try:
            response = self._connection.get_raw(path, {"Range": f"bytes={start}-{end}"})
        except GirderHttpError as exc:
            raise _download_error(self.info, exc) from None
        with response:
            whole_file = start == 0 and end == self.size - 1
            if response.status_code == 200 and not whole_file:
                raise RangeNotSupported("Girder does not answer range requests")
            if response.status_code == 206:
                self._check_content_range(response.headers.get("Content-Range", ""), start, end)
            elif response.status_code != 200:
                raise GirderUnavailable(f"Girder answered {response.status_code} to a download")
            try:
                body = response.content
            except requests.RequestException as exc:
                log.warning("reading %s from Girder failed: %s", self.name, exc)
                raise GirderUnavailable("Girder stopped answering during a download") from None
        if len(body) != end - start + 1:
            raise GirderUnavailable("Girder sent fewer bytes than asked for")
        return body

    def _check_content_range(self, header: str, start: int, end: int) -> None:
        match = CONTENT_RANGE.match(header.strip())
        if not match or (int(match[1]), int(match[2])) != (start, end):
            raise GirderUnavailable("Girder answered a different range than asked for")
        if match[3] != "*" and int(match[3]) != self.size:
            # The file's content changed after it was resolved: its blocks must not mix.
            raise GirderUnavailable("the Girder file changed while it was read")


def _download_error(info: GirderFileInfo, exc: GirderHttpError) -> Exception:
    if exc.status in (400, 403, 404):
        return UnknownSource(f"the file of Girder item {info.item_id} is gone")
    if exc.status == 416:
        return GirderUnavailable("the Girder file changed while it was read")
    return GirderUnavailable(f"Girder answered {exc.status} to a download")
