"""Generation-versioned image URLs: cacheable for a year.

Every answer about an item (its metadata, tiles, thumbnails, regions, ...) says the
source's current generation in ``X-Tilecast-Generation``. An image URL (an answer with
a strong ETag) that carries it back as ``gen`` names bytes that can never change (a new
file is a new generation, hence another URL), so its answer is sent ``max-age=31536000,
immutable``; any other ``gen`` (an old one), or none, gets the usual
``TILECAST_HTTP_MAX_AGE``. ``gen`` is not part of the cache key: every URL of one tile
shares one cached rendering.

A ``gen`` older than the current generation answers 404 (``generation_gone``): the
source's file changed (or was registered again) since, and tilecast keeps no old
file to render what that URL promised; answering with the new file's bytes would
mix them with the old ones a viewer holds. A ``gen`` ahead of this process's memo
(another api process saw the bump first) is served as the current generation.
"""

from __future__ import annotations

from flask import Flask, Response, request

from tilecast.api.openapi import doc_of
from tilecast.api.services import services
from tilecast.common.errors import GenerationGone, TilecastError
from tilecast.common.query import GENERATION

GENERATION_HEADER = "X-Tilecast-Generation"
IMMUTABLE_MAX_AGE = 365 * 24 * 3600


def immutable(cache_control: str) -> str:
    """The Cache-Control of an image asked at its current generation: its scope (public,
    or private behind access) kept, cacheable for a year."""
    scope = cache_control.split(",", 1)[0]
    return f"{scope}, max-age={IMMUTABLE_MAX_AGE}, immutable"


def gone(asked: str, current: int) -> bool:
    """Whether a ``gen`` of an image URL names a generation older than ``current``
    (a 404); a malformed one is ignored (the request is answered as without it)."""
    return asked.isascii() and asked.isdigit() and len(asked) <= 18 and int(asked) < current


def install(app: Flask) -> None:
    # endpoint -> whether its answer takes ``gen`` (images: common/query.py); asked on every
    # hit, so looked up in the view's declared parameters once per endpoint.
    takes_generation: dict[str, bool] = {}

    def takes_gen(endpoint: str | None) -> bool:
        if endpoint is None:
            return False
        known = takes_generation.get(endpoint)
        if known is None:
            view = app.view_functions.get(endpoint)
            known = view is not None and GENERATION in doc_of(view).query
            takes_generation[endpoint] = known
        return known

    @app.before_request
    def refuse_old_generations() -> None:
        item_id = (request.view_args or {}).get("item_id")
        if item_id is None or not takes_gen(request.endpoint):
            return
        asked = request.args.get(GENERATION.name, "")
        if not (asked.isascii() and asked.isdigit()) or len(asked) > 18:
            return
        svc = services()
        try:
            current = svc.generations.get(item_id)  # memoized: the handler asks it too
        except TilecastError:
            return  # the handler answers for an unknown item
        if gone(asked, current):
            raise GenerationGone(
                f"generation {asked} of item {item_id} is no longer served: its file "
                "changed; ask for the item's metadata again",
                parameter=GENERATION.name,
            )

    @app.after_request
    def version(response: Response) -> Response:
        item_id = (request.view_args or {}).get("item_id")
        if item_id is None or response.status_code not in (200, 304):
            return response
        svc = services()
        try:
            generation = str(svc.generations.get(item_id))  # memoized: the hit path asked
        except TilecastError:
            return response  # forgotten meanwhile: the answer stays as it was
        response.headers[GENERATION_HEADER] = generation
        # Only images (strong ETag) are versioned; metadata tells the generation.
        if "ETag" in response.headers and request.args.get(GENERATION.name) == generation:
            response.headers["Cache-Control"] = immutable(svc.cache_control)
        return response
