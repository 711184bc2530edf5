"""The OME-Zarr view (api/protocols/zarr.py): ``/zarr/{id}/`` is a read-only NGFF 0.4
image in zarr v2 format that zarr readers open over plain HTTP -- ``.zgroup``,
``.zattrs``, ``.zmetadata``, ``{dataset}/.zarray``, ``{dataset}/.zattrs`` and the chunks
``{dataset}/{t}/{c}/{z}/{y}/{x}`` (the frame axes the image has).

Versions: ``/zarr/{id}/`` is always the source's current generation (a changed file's
chunks are new cache keys; its documents are sent ``no-cache``, so a reader that
reopens sees the new shape). ``/zarr/{id}/v{generation}/`` pins one generation
(``X-Tilecast-Generation`` says the current one): while it is current its answers are
cacheable for a year (immutable); once the file changed it answers 410
``version_gone``, never 404, which a zarr reader would take for empty chunks.

Keys that name nothing (another document, a dataset or chunk index outside the
array, a malformed key) are 404 JSON; every chunk inside the array is answered, rendered
on a miss. The id is the item id of every other endpoint, so access checks apply as
there (a signed grant of ``/item/{id}/`` or ``/item/{id}/zarr/`` covers the view; zarr
readers drop queries, so use its path form ``/signed/{keyid}/{expires}/{signature}/zarr/
{id}/``). CORS as on every read route.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request

from tilecast.api.http import image_response
from tilecast.api.miss import answers
from tilecast.api.openapi import IMAGE_ANSWERS, JSON, document
from tilecast.api.protocols import zarr
from tilecast.api.protocols.handlers import MetadataMemo
from tilecast.api.protocols.zarrlayout import ZarrLayout
from tilecast.api.services import Services, services
from tilecast.common.errors import NotFound, VersionGone
from tilecast.common.zarrchunk import CONTENT_TYPE, ChunkRequest

bp = Blueprint("zarr", __name__, url_prefix="/zarr")
LAYOUTS = "tilecast.zarr_layouts"
IMMUTABLE_MAX_AGE = 365 * 24 * 3600
_VERSION = re.compile(r"v(\d{1,18})")
ANSWERS = {
    **IMAGE_ANSWERS,
    404: "unknown item, or a key that names no document or chunk of the array",
    410: "the source's file is gone, or the pinned generation is no longer current",
}


def layout(svc: Services, item_id: str) -> ZarrLayout:
    """The view's layout of the current generation, remembered per process."""
    memo: MetadataMemo[ZarrLayout] = current_app.extensions.setdefault(
        LAYOUTS, MetadataMemo(ZarrLayout.from_metadata)
    )
    return memo.get(svc, item_id)


@bp.get("/<item_id>/<path:key>")
@document(responses=ANSWERS, produces=(*JSON, CONTENT_TYPE))
def view(item_id: str, key: str) -> Response:
    """A key of the item's OME-Zarr view (NGFF 0.4, zarr v2): ``.zgroup``, ``.zattrs``
    (multiscales, omero), ``.zmetadata`` (consolidated), ``{dataset}/.zarray``,
    ``{dataset}/.zattrs`` or a chunk ``{dataset}/{t}/{c}/{z}/{y}/{x}`` (the frame axes the
    image has; zlib-compressed raw pixels); each optionally under ``v{generation}/``,
    which pins the source's generation (immutable while current, 410 once not)."""
    svc = services()
    parts = key.split("/")
    pinned = _pinned_generation(svc, item_id, parts[0])
    if pinned:
        parts = parts[1:]
    response = _answer(svc, item_id, parts)
    if pinned and response.status_code in (200, 304):
        scope = svc.cache_control.split(",", 1)[0]  # public, or private behind access
        response.headers["Cache-Control"] = f"{scope}, max-age={IMMUTABLE_MAX_AGE}, immutable"
    return response


def _pinned_generation(svc: Services, item_id: str, first: str) -> bool:
    """Whether the path is pinned (``v{generation}/``); VersionGone for an older one. A
    generation ahead of this process's memo (another process saw the bump first) is
    served as the current one."""
    match = _VERSION.fullmatch(first)
    if match is None:
        return False
    if int(match.group(1)) < svc.generations.get(item_id):
        raise VersionGone(
            f"generation {match.group(1)} of item {item_id} is no longer served: its file "
            f"changed; open /zarr/{item_id}/ again"
        )
    return True


def _answer(svc: Services, item_id: str, parts: list[str]) -> Response:
    documents: dict[str, Callable[[ZarrLayout, str], dict[str, Any]]] = {
        zarr.ZGROUP: lambda _layout, _name: zarr.zgroup(),
        zarr.ZATTRS: zarr.zattrs,
        zarr.ZMETADATA: zarr.zmetadata,
    }
    if len(parts) == 1 and parts[0] in documents:
        record = answers.record(svc, item_id)
        view_layout = ZarrLayout.from_metadata(record.metadata)
        return _json(documents[parts[0]](view_layout, record.name or item_id))
    view_layout = layout(svc, item_id)
    dataset = view_layout.dataset_of(parts[0]) if len(parts) > 1 else None
    if dataset is None:
        raise NotFound(
            f"the OME-Zarr view has no {'/'.join(parts)!r}: its keys are .zgroup, .zattrs, "
            f".zmetadata and, for datasets 0 to {view_layout.datasets - 1}, "
            "{dataset}/.zarray, {dataset}/.zattrs and chunks",
            parameter="key",
        )
    if parts[1:] == [zarr.ZARRAY]:
        return _json(zarr.zarray(view_layout, dataset))
    if parts[1:] == [zarr.ZATTRS]:
        return _json({})
    place = view_layout.locate(dataset, parts[1:])
    chunk = ChunkRequest(item_id, place.frame, place.z, place.x, place.y)
    return image_response(zarr.chunk(svc, chunk), svc.cache_control)


def _json(document: dict[str, Any]) -> Response:
    """A metadata document: revalidated at each use (a changed file changes it), which
    costs a 304."""
    body = json.dumps(document, separators=(",", ":"))
    response = Response(body, content_type="application/json")
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    scope = services().cache_control.split(",", 1)[0]
    response.headers["Cache-Control"] = f"{scope}, no-cache"
    return response.make_conditional(request)
