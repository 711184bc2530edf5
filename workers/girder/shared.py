"""What worker processes and hosts share about Girder files in the cache Redis.

- Range-read blocks (workers/remote/shared.py): a file's directories, read once by
  whoever opened it first, cost the other processes one Redis round trip.
- Which file a registration of an item reads (its :class:`GirderFileInfo`), keyed by
  the source generation the describe task created: the first render of every process
  skips Girder's item and file look-ups. A replaced file is described again under a new
  generation, so a render never finds the older file under its own generation.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from tilecast.common.cache import TileCache
from tilecast.common.keys import girder_block_key as block_key
from tilecast.common.keys import girder_file_key as file_info_key
from tilecast.workers.girder.items import GirderFileInfo
from tilecast.workers.remote.shared import SharedBlocks

__all__ = ["SharedTier", "block_key"]


class SharedTier(SharedBlocks):
    def __init__(self, url: str, block_ttl: int, file_ttl: int, block_size: int) -> None:
        super().__init__(url, block_ttl, block_size, block_key)
        self._files = TileCache(self._client, ttl=file_ttl) if file_ttl > 0 else None

    def file_info(self, item_id: str, generation: int) -> GirderFileInfo | None:
        (data,) = self._get(self._files, [file_info_key(item_id, generation)])
        try:
            return None if data is None else GirderFileInfo(**json.loads(data))
        except (ValueError, TypeError):
            return None  # written by another version of tilecast: ask Girder

    def put_file_info(self, generation: int, info: GirderFileInfo) -> None:
        key = file_info_key(info.item_id, generation)
        self._put(self._files, {key: json.dumps(asdict(info)).encode()})
