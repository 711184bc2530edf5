"""Associated images of a source (label, macro, thumbnail): the list of their names and
each image, rendered by a worker and cached like tiles (common/associated.py keys),
through the one hit and miss path (api/miss/answers.py)."""

from __future__ import annotations

import json

from tilecast.api.miss import answers
from tilecast.api.miss.answers import Image, Work
from tilecast.api.services import Services
from tilecast.common.associated import AssociatedRequest, valid_name
from tilecast.common.errors import NotFound
from tilecast.common.taskprotocol import TASK_RENDER_ASSOCIATED, render_associated_payload


def names(svc: Services, source_id: str) -> list[str]:
    """The source's associated image names (large_image's ``getAssociatedImagesList``)."""
    request = AssociatedRequest(source_id)
    generation = svc.generations.get(source_id)  # UnknownSource (404) for unknown ids
    work = Work(TASK_RENDER_ASSOCIATED, render_associated_payload(request, generation))
    data = answers.fetch(svc, source_id, request.key(generation), work)
    value = json.loads(data)
    return [str(name) for name in value] if isinstance(value, list) else []


def image(svc: Services, request: AssociatedRequest) -> Image:
    """One associated image; an unknown name is a 404 answered without a render."""
    name = request.name
    assert name is not None
    if not valid_name(name):
        raise NotFound(f"the image has no associated image {name!r}", parameter="name")

    def miss(gen: int) -> Work:
        if name not in names(svc, request.source):
            raise NotFound(f"the image has no associated image {name!r}", parameter="name")
        return Work(TASK_RENDER_ASSOCIATED, render_associated_payload(request, gen))

    return answers.answer(
        svc, answers.ASSOCIATED, request.source, request.encoding.content_type, request.key, miss
    )
