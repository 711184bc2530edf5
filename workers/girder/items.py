"""Which file of a Girder item is its image, and what identifies that file's content.

An item's image is its ``largeImage.fileId`` when the large_image plugin set one (the
file large_image itself reads), else its only file, else its only file with an image
extension. The ``version`` changes whenever the file's content may have changed, so
blocks and downloads cached under an older version are never read for a newer one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from tilecast.common.errors import GirderUnavailable, UnknownSource, UnsupportedImage
from tilecast.workers.girder.client import GirderConnection, GirderHttpError

log = logging.getLogger(__name__)

# Extensions of files some tilecast reader opens (TIFF family, libvips formats).
IMAGE_EXTENSIONS = frozenset({
    "tif", "tiff", "ptif", "ptiff", "svs", "btf", "tf2", "tf8", "qptiff", "scn", "bif", "ndpi",
    "jpg", "jpeg", "jpe", "jp2", "j2k", "jxl", "png", "webp", "gif", "heic", "heif", "avif",
    "ppm", "pgm", "pbm", "pfm", "fits", "fit", "fts", "v", "vips", "exr", "hdr",
})  # fmt: skip
NO_IMAGE = "the item has no image file"
# Fields of a Girder file document that change when its content is replaced.
VERSION_FIELDS = ("_id", "created", "updated", "size", "sha512", "assetstoreId")


@dataclass(frozen=True)
class GirderFileInfo:
    item_id: str
    item_name: str
    file_id: str
    name: str
    size: int
    version: str


def resolve_item(connection: GirderConnection, item_id: str) -> GirderFileInfo:
    """The image file of ``item_id``; UnknownSource for an unknown item,
    UnsupportedImage for an item without one image file."""
    try:
        item = connection.get_json(f"item/{item_id}")
    except GirderHttpError as exc:
        raise _item_error(item_id, exc) from None
    document = _image_file(connection, item_id, item)
    return file_info(item_id, str(item.get("name") or item_id), document)


def file_info(item_id: str, item_name: str, document: dict[str, Any]) -> GirderFileInfo:
    if document.get("linkUrl") or not isinstance(document.get("size"), int):
        raise UnsupportedImage(NO_IMAGE)  # a link file has no content in Girder
    if document["size"] <= 0:
        raise UnsupportedImage("the item's image file is empty")
    return GirderFileInfo(
        item_id=item_id,
        item_name=item_name,
        file_id=str(document["_id"]),
        name=str(document.get("name") or document["_id"]),
        size=int(document["size"]),
        version=file_version(document),
    )


def file_version(document: dict[str, Any]) -> str:
    fields = {name: str(document.get(name)) for name in VERSION_FIELDS}
    canonical = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def choose_file(files: list[dict[str, Any]]) -> dict[str, Any]:
    """The one file of an item, or its one file with an image extension."""
    if len(files) == 1:
        return files[0]
    images = [f for f in files if _extension(str(f.get("name", ""))) in IMAGE_EXTENSIONS]
    if len(images) != 1:
        raise UnsupportedImage(NO_IMAGE)
    return images[0]


def _image_file(connection: GirderConnection, item_id: str, item: dict[str, Any]) -> dict[str, Any]:
    large = item.get("largeImage")
    file_id = large.get("fileId") if isinstance(large, dict) else None
    try:
        if file_id:
            document = connection.get_json(f"file/{file_id}")
        else:
            files = connection.get_json(f"item/{item_id}/files", {"limit": 0})
            if not isinstance(files, list):
                raise GirderUnavailable("Girder's file list is malformed")
            document = choose_file(files)
    except GirderHttpError as exc:
        if exc.status in (400, 403, 404):
            raise UnsupportedImage(NO_IMAGE) from None
        raise GirderUnavailable(f"Girder answered {exc.status}") from None
    if not isinstance(document, dict) or "_id" not in document:
        raise GirderUnavailable("Girder's file record is malformed")
    if str(document.get("itemId", item_id)) != item_id:
        raise UnsupportedImage(NO_IMAGE)  # a stale largeImage.fileId
    return document


def _item_error(item_id: str, exc: GirderHttpError) -> Exception:
    if exc.status in (400, 404):  # Girder: 400 "Invalid item id (...)"
        return UnknownSource.girder_item(item_id)
    if exc.status == 403:
        log.warning("tilecast's Girder account may not read item %s", item_id)
        return UnknownSource(f"Girder item {item_id} is not readable by tilecast")
    if exc.status == 401:
        return GirderUnavailable("Girder refused tilecast's credentials")
    return GirderUnavailable(f"Girder answered {exc.status}")


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""
