"""Girder vocabulary both sides share: how a Girder item is named as a source, the
header the Girder plugin authenticates with, and what an item id looks like.

A Girder item is registered under its own id (a 24-hex ObjectId), so
``/item/{girder item id}/tiles/...`` is the same URL as in girder_large_image; its
record's path is ``girder://item/{id}``, which workers resolve through Girder
(workers/girder/).
"""

from __future__ import annotations

import re

import requests
from requests.adapters import HTTPAdapter

GIRDER_SCHEME = "girder://item/"
# What the Girder plugin sends its shared secret in (a header Girder itself ignores).
SECRET_HEADER = "Tilecast-Secret"
# Where Girder's own clients send a token: header, query parameter, cookie.
TOKEN_HEADER = "Girder-Token"
TOKEN_PARAMETER = "token"
TOKEN_COOKIE = "girderToken"

_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
# Connections kept per Girder host: an api process's threads checking a viewer's first
# tiles together, or a worker process's libvips threads reading one file.
POOL_SIZE = 32


def pooled_session() -> requests.Session:
    """An HTTP session for Girder calls that keeps up to POOL_SIZE connections."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def is_object_id(value: str) -> bool:
    return bool(_OBJECT_ID.match(value))


def girder_source_path(item_id: str) -> str:
    return GIRDER_SCHEME + item_id


def girder_item_id(path: str) -> str | None:
    """The item id of a ``girder://item/{id}`` path, None for any other path."""
    if not path.startswith(GIRDER_SCHEME):
        return None
    item_id = path[len(GIRDER_SCHEME) :]
    return item_id if is_object_id(item_id) else None
