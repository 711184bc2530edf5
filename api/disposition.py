"""``contentDisposition`` / ``contentDispositionFilename``: girder_large_image's
``Content-Disposition`` header on thumbnails, regions and associated images.

Its filename is the item's name without its extension, ``-`` and what was asked
(``thumbnail``, ``region`` or the associated image's name), then the extension of the
content type; ``contentDispositionFilename`` replaces all of it. One difference on
purpose: girder_large_image formats the ASCII ``filename=`` from bytes, so browsers
that do not read ``filename*`` are offered ``b'name.jpg'``; tilecast sends the name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from urllib.parse import quote

from flask import Response

from tilecast.api.services import services
from tilecast.common.query import CONTENT_DISPOSITION, CONTENT_DISPOSITION_FILENAME

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/tiff": "tiff",
    "image/webp": "webp",
    "image/avif": "avif",
}


def content_disposition(
    args: Mapping[str, str], item_name: Callable[[], str], subname: str, content_type: str
) -> str | None:
    """The header's value, or None when none was asked for (or the type has no
    extension). ``item_name`` is only called when the header is sent."""
    disposition = args.get(CONTENT_DISPOSITION.name)
    extension = EXTENSIONS.get(content_type)
    if disposition not in CONTENT_DISPOSITION.choices or extension is None:
        return None
    filename = args.get(CONTENT_DISPOSITION_FILENAME.name) or (
        f"{os.path.splitext(item_name())[0]}-{subname}.{extension}"
    )
    # Quotes and control characters cannot stand in a quoted header value.
    plain = "".join(c for c in filename if c.isascii() and c.isprintable() and c not in '"\\')
    encoded = quote(filename.encode("utf8", "ignore"))
    return f"{disposition}; filename=\"{plain}\"; filename*=UTF-8''{encoded}"


def add_content_disposition(
    response: Response,
    args: Mapping[str, str],
    item_name: Callable[[], str],
    subname: str,
) -> Response:
    if response.status_code != 200:
        return response
    value = content_disposition(args, item_name, subname, response.mimetype)
    if value is not None:
        response.headers["Content-Disposition"] = value
    return response


def item_name(item_id: str) -> Callable[[], str]:
    """The name a download of the item's images is offered under (read only when asked)."""
    return lambda: services().registry.get(item_id).name
