"""Girder events that tilecast hears about.

- ``model.file.finalizeUpload.after``: an upload completed, including Girder's "update
  contents" of an existing file -> POST (reason "upload").
- ``filesystem_assetstore_imported`` + ``model.file.save.after``: Girder fires the former
  for an item just before it saves the item's imported files (in the same thread), so a
  saved file marked ``imported`` whose item was the last one announced in this thread is
  an import -> POST (reason "import"), when ``tilecast.precache_on_import`` is on.
- ``model.file.remove`` (image files) and ``model.item.remove`` -> DELETE.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from girder import events

from . import settings
from .notifier import Call, Notifier
from .rules import looks_like_image

HANDLER = "tilecast"
logger = logging.getLogger("girder.plugins.tilecast")
notifier = Notifier(logger)
_importing = threading.local()


def bind() -> None:
    events.bind("model.file.finalizeUpload.after", HANDLER, _on_upload)
    events.bind("filesystem_assetstore_imported", HANDLER, _on_import_started)
    events.bind("model.file.save.after", HANDLER, _on_file_saved)
    events.bind("model.file.remove", HANDLER, _on_file_removed)
    events.bind("model.item.remove", HANDLER, _on_item_removed)


def _on_upload(event: Any) -> None:
    _announce(event.info["file"], "upload")


def _on_import_started(event: Any) -> None:
    if event.info.get("type") == "item":
        _importing.item_id = str(event.info["id"])


def _on_file_saved(event: Any) -> None:
    file = event.info
    if not file.get("imported") or not file.get("itemId"):
        return
    if str(file["itemId"]) != getattr(_importing, "item_id", None):
        return
    if settings.current().precache_on_import:
        _announce(file, "import")


def _on_file_removed(event: Any) -> None:
    file = event.info
    if file.get("itemId") and looks_like_image(file.get("name"), file.get("mimeType")):
        _forget(str(file["itemId"]))


def _on_item_removed(event: Any) -> None:
    _forget(str(event.info["_id"]))


def _announce(file: dict, reason: str) -> None:
    if not file.get("itemId") or not looks_like_image(file.get("name"), file.get("mimeType")):
        return
    config = settings.current()
    if not config.url:
        return
    item_id = str(file["itemId"])
    body = {"fileId": str(file["_id"]), "levels": config.levels, "thumbnail": True}
    notifier.submit(
        Call(
            "POST",
            _item_url(config.url, item_id),
            config.secret,
            item_id,
            {**body, "reason": reason},
        ),
    )


def _forget(item_id: str) -> None:
    config = settings.current()
    if config.url:
        notifier.submit(Call("DELETE", _item_url(config.url, item_id), config.secret, item_id))


def _item_url(base: str, item_id: str) -> str:
    return f"{base}/girder/items/{item_id}"
