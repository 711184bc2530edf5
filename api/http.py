"""HTTP caching of images: a strong ETag from the cache key, Cache-Control, and 304s
answered from the key alone, without reading the tile."""

from __future__ import annotations

import hashlib

from flask import Response, request

from api.handlers.tiles import Image


def etag_for(key: str) -> str:
    """A key names one immutable rendering (its generation changes when the file does),
    so a digest of the key is a strong validator."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def image_response(image: Image, max_age: int) -> Response:
    etag = etag_for(image.key)
    if _client_has(etag):
        response = Response(status=304)
    else:
        response = Response(image.load(), mimetype=image.content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


def _client_has(etag: str) -> bool:
    # "*" is ignored on purpose: it would answer 304 for a tile that may not exist.
    tags = request.if_none_match
    return not tags.star_tag and tags.contains_weak(etag)
