"""HTTP caching of images: a strong ETag from the cache key, Cache-Control, and 304s
answered from the key alone, without reading the tile."""

from __future__ import annotations

import hashlib

from flask import Response, request

from tilecast.api.miss.answers import CACHE, RENEWED_KEY, Image

# hit or miss: whether a tile came straight from the cache (tests/bench classify by it).
CACHE_HEADER = "X-Tilecast-Cache"


def etag_for(key: str) -> str:
    """A key names one immutable rendering (its generation changes when the file does),
    so a digest of the key is a strong validator."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def image_response(image: Image, cache_control: str) -> Response:
    etag = etag_for(image.key)
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control}
    if _client_has(etag):
        if image.not_modified is not None:
            image.not_modified()
        return Response(status=304, headers=headers)
    data = image.load()
    renewed = image.outcome.get(RENEWED_KEY)
    if renewed is not None:  # rendered from the source's newer file: its own ETag
        headers["ETag"] = f'"{etag_for(renewed)}"'
    if CACHE in image.outcome:
        headers[CACHE_HEADER] = image.outcome[CACHE]
    return Response(data, mimetype=image.content_type, headers=headers)


def _client_has(etag: str) -> bool:
    # Most requests carry no If-None-Match: skip parsing one (the hit path's cost).
    if "HTTP_IF_NONE_MATCH" not in request.environ:
        return False
    # "*" is ignored on purpose: it would answer 304 for a tile that may not exist.
    tags = request.if_none_match
    return not tags.star_tag and tags.contains_weak(etag)
