"""Associated images of a source (label, macro, thumbnail): the list of their names and
each image, rendered by a worker and cached like tiles (common/associated.py keys)."""

from __future__ import annotations

import json

from tilecast.api.handlers.tiles import Image
from tilecast.api.services import Services
from tilecast.common.associated import AssociatedRequest, valid_name
from tilecast.common.errors import NotFound
from tilecast.common.protocol import TASK_RENDER_ASSOCIATED, render_associated_payload


def names(svc: Services, source_id: str) -> list[str]:
    """The source's associated image names (large_image's ``getAssociatedImagesList``)."""
    request = AssociatedRequest(source_id)
    generation = svc.generations.get(source_id)  # UnknownSource (404) for unknown ids
    data = _fetch(svc, request, generation)
    value = json.loads(data)
    return [str(name) for name in value] if isinstance(value, list) else []


def image(svc: Services, request: AssociatedRequest) -> Image:
    """One associated image; an unknown name is a 404 answered without a render."""
    assert request.name is not None
    if not valid_name(request.name):
        raise NotFound(f"the image has no associated image {request.name!r}", parameter="name")
    generation = svc.generations.get(request.source)
    key = request.key(generation)

    def load() -> bytes:
        data = svc.cache.get(key)
        if data is not None:
            return data
        if request.name not in names(svc, request.source):
            raise NotFound(f"the image has no associated image {request.name!r}", parameter="name")
        return _fetch(svc, request, generation)

    return Image(key, request.encoding.content_type, load)


def _fetch(svc: Services, request: AssociatedRequest, generation: int) -> bytes:
    key = request.key(generation)
    payload = render_associated_payload(request, generation)
    return svc.dispatcher.fetch(
        key,
        lookup=lambda: svc.cache.get(key),
        send=lambda: svc.sender.send(TASK_RENDER_ASSOCIATED, payload),
    )
