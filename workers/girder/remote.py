"""A Girder file read by HTTP range requests of ``/file/{id}/download``: a
:class:`~tilecast.workers.remote.ranged.RangedFile` (block cache, coalesced runs, blocks
shared in the cache Redis) whose ranges are Girder downloads."""

from __future__ import annotations

import logging
import re

import requests

from tilecast.common.errors import GirderUnavailable, UnknownSource
from tilecast.workers.girder.client import GirderConnection, GirderHttpError
from tilecast.workers.girder.items import GirderFileInfo
from tilecast.workers.girder.shared import SharedTier
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.remote.ranged import RangedFile

log = logging.getLogger(__name__)

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RangeNotSupported(GirderUnavailable):
    """Girder (or a proxy before it) answered a range request with the whole file."""


class RemoteFile(RangedFile):
    def __init__(
        self,
        info: GirderFileInfo,
        connection: GirderConnection,
        blocks: BlockCache,
        block_size: int,
        shared: SharedTier | None = None,
    ) -> None:
        super().__init__(f"{info.file_id}:{info.version}", info.size, blocks, block_size, shared)
        self.info = info
        self.name = f"girder file {info.file_id} ({info.name})"
        self._connection = connection

    def fetch_range(self, start: int, end: int) -> bytes:
        return self._download_range(start, end)

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
