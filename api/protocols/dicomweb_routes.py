"""DICOMweb (PS3.18) under ``/dicomweb``: QIDO-RS searches, WADO-RS metadata and
frames of every registered source (common/dicomwsi.py says how a source becomes a
study; api/protocols/dicomweb.py finds studies and frames).

Routes that name a study are item routes: the study's source is put among the view
arguments as ``item_id`` before the access check runs, so ``girder`` and ``signed``
modes check them as they check ``/item/{id}/...`` (a signed grant of ``/item/{id}/``
covers ``/dicomweb/studies/{its study}/...``, common/signing.py). The searches over
every study (``/dicomweb/studies``, ``/dicomweb/series``, ``/dicomweb/instances``) list
what the server holds, as ``GET /sources`` does, and need management rights in those
modes (api/middleware/access.py ``LISTING_ENDPOINTS``); CORS treats them as read routes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from importlib import metadata as package_metadata
from typing import Any

from flask import Blueprint, Response, g, request

from tilecast.api.http import CACHE_HEADER, etag_for
from tilecast.api.miss.answers import CACHE, HIT, MISS
from tilecast.api.openapi import IMAGE_ANSWERS, document
from tilecast.api.protocols import dicomweb
from tilecast.api.services import services
from tilecast.common import dicomuids, dicomwsi
from tilecast.common.dicomjson import to_json
from tilecast.common.dicomquery import QIDO_PARAMS, Query, parse_query
from tilecast.common.dicomwsi import Slide
from tilecast.common.query import GIRDER_CREDENTIALS, SIGNED_GRANT

bp = Blueprint("dicomweb", __name__, url_prefix="/dicomweb")
DICOM_JSON = "application/dicom+json"
MULTIPART_JPEG = f'multipart/related; type="{dicomwsi.JPEG_MEDIA_TYPE}"'
MULTIPART_OCTETS = f'multipart/related; type="{dicomweb.OCTETS}"'
# Query keys that carry credentials, not DICOM matching.
CREDENTIAL_KEYS = frozenset(p.name for p in (*GIRDER_CREDENTIALS, *SIGNED_GRANT))
SLIDE = "dicomweb_slide"
SEARCH_ANSWERS = {400: "a malformed limit, offset or match key"}
STUDY_ANSWERS = {**IMAGE_ANSWERS, 404: "unknown study, series or instance"}


@bp.url_value_preprocessor
def resolve_study(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A study UID names a source: found before the access check, which reads
    ``item_id`` (an unknown study is a 404 before anything else)."""
    if values and "study" in values:
        if not dicomuids.is_uid(values["study"]):
            raise dicomweb.UnknownStudy(f"not a study UID: {values['study'][:80]!r}")
        slide = dicomweb.index().find(services(), values["study"])
        values["item_id"] = slide.source
        setattr(g, SLIDE, slide)


def _slide() -> Slide:
    return getattr(g, SLIDE)  # type: ignore[no-any-return]


def _query() -> Query:
    return parse_query(request.args.items(multi=True), request.args, CREDENTIAL_KEYS)


def _software() -> str:
    try:
        return "tilecast " + package_metadata.version("tilecast")
    except package_metadata.PackageNotFoundError:
        return "tilecast"


def _json_answer(
    datasets: Iterable[dict[str, Any]], query: Query | None = None, *, listing: bool = False
) -> Response:
    """DICOM JSON with a strong ETag. What a study holds never changes (its UIDs name a
    generation): cached like tiles. A listing of every study changes as sources come
    and go: revalidated each time (``no-cache``; a 304 when unchanged)."""
    body = json.dumps([to_json(d) for d in datasets], separators=(",", ":"))
    response = Response(body, content_type=DICOM_JSON)
    if query is not None and query.warning:
        response.headers["Warning"] = query.warning
    response.headers["Cache-Control"] = "no-cache" if listing else services().cache_control
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    return response.make_conditional(request)


def _search(records: Iterator[dict[str, Any]], query: Query, listing: bool = False) -> Response:
    matching = (record for record in records if query.accepts(record))
    page = itertools.islice(matching, query.offset, query.offset + query.limit)
    return _json_answer(list(page), query, listing=listing)


def _series_records(slides: Iterable[Slide]) -> Iterator[dict[str, Any]]:
    for slide in slides:
        for frame in range(slide.frame_count):
            yield dicomwsi.series_record(slide, frame)


def _instance_records(
    slides: Iterable[Slide], frames: Iterable[int] | None = None
) -> Iterator[dict[str, Any]]:
    for slide in slides:
        for frame in range(slide.frame_count) if frames is None else frames:
            for level in reversed(range(slide.grid.levels)):
                yield dicomwsi.instance_record(slide, frame, level)


# --- QIDO-RS ---------------------------------------------------------------------------


@bp.get("/studies")
@document(query=QIDO_PARAMS, responses=SEARCH_ANSWERS, produces=(DICOM_JSON,))
def search_studies() -> Response:
    """Search studies: one per registered source (DICOM JSON)."""
    slides = dicomweb.index().all(services())
    return _search((dicomwsi.study_record(s) for s in slides), _query(), listing=True)


@bp.get("/series")
@document(query=QIDO_PARAMS, responses=SEARCH_ANSWERS, produces=(DICOM_JSON,))
def search_series() -> Response:
    """Search series of every study: one per frame of each source."""
    return _search(_series_records(dicomweb.index().all(services())), _query(), listing=True)


@bp.get("/instances")
@document(query=QIDO_PARAMS, responses=SEARCH_ANSWERS, produces=(DICOM_JSON,))
def search_instances() -> Response:
    """Search instances of every study: one per level of each frame."""
    return _search(_instance_records(dicomweb.index().all(services())), _query(), listing=True)


@bp.get("/studies/<study>/series")
@document(query=QIDO_PARAMS, responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def study_series(study: str, item_id: str) -> Response:
    """Search the series of a study."""
    return _search(_series_records([_slide()]), _query())


@bp.get("/studies/<study>/instances")
@document(query=QIDO_PARAMS, responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def study_instances(study: str, item_id: str) -> Response:
    """Search the instances of a study."""
    return _search(_instance_records([_slide()]), _query())


@bp.get("/studies/<study>/series/<series>/instances")
@document(query=QIDO_PARAMS, responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def series_instances(study: str, series: str, item_id: str) -> Response:
    """Search the instances of a series: one per level, full resolution first."""
    slide = _slide()
    frame = dicomweb.frame_of(slide, series)
    return _search(_instance_records([slide], [frame]), _query())


# --- WADO-RS metadata ------------------------------------------------------------------


def _metadata(slide: Slide, frame: int, level: int) -> dict[str, Any]:
    svc = services()
    pixels = dicomweb.pixel_format(svc, slide, frame, level)
    return dicomwsi.instance_metadata(slide, frame, level, pixels, _software())


def _levels(slide: Slide) -> range:
    return range(slide.grid.levels - 1, -1, -1)


@bp.get("/studies/<study>/metadata")
@document(responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def study_metadata(study: str, item_id: str) -> Response:
    """The metadata of every instance of a study (VL Whole Slide Microscopy Image)."""
    slide = _slide()
    return _json_answer(
        _metadata(slide, frame, level)
        for frame in range(slide.frame_count)
        for level in _levels(slide)
    )


@bp.get("/studies/<study>/series/<series>/metadata")
@document(responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def series_metadata(study: str, series: str, item_id: str) -> Response:
    """The metadata of every instance (level) of a series, full resolution first."""
    slide = _slide()
    frame = dicomweb.frame_of(slide, series)
    return _json_answer(_metadata(slide, frame, level) for level in _levels(slide))


@bp.get("/studies/<study>/series/<series>/instances/<instance>/metadata")
@document(responses=STUDY_ANSWERS, produces=(DICOM_JSON,))
def instance_metadata(study: str, series: str, instance: str, item_id: str) -> Response:
    """The metadata of one instance: a VL Whole Slide Microscopy Image of one level."""
    slide = _slide()
    frame = dicomweb.frame_of(slide, series)
    level = dicomweb.level_of(slide, frame, instance)
    return _json_answer([_metadata(slide, frame, level)])


# --- WADO-RS frames --------------------------------------------------------------------


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frames>")
@document(
    responses={**STUDY_ANSWERS, 400: "malformed frame numbers", 406: "no JPEG accepted"},
    produces=(MULTIPART_JPEG, MULTIPART_OCTETS, dicomwsi.JPEG_MEDIA_TYPE),
)
def frames(study: str, series: str, instance: str, frames: str, item_id: str) -> Response:
    """Frames (1-based, comma-separated) of an instance, as multipart/related JPEG
    (transfer syntax 1.2.840.10008.1.2.4.50; ``type="application/octet-stream";
    transfer-syntax=*`` gets the same bytes in octet-stream parts): frame n is the
    level's ``zxy`` tile in TILED_FULL order, the same cache entry; a JPEG tile of the
    file passes through."""
    svc = services()
    slide = _slide()
    frame = dicomweb.frame_of(slide, series)
    level = dicomweb.level_of(slide, frame, instance)
    numbers = dicomweb.parse_frame_numbers(frames)
    media = dicomweb.frames_media(request.headers.get("Accept"), len(numbers))
    images = [dicomweb.frame_image(svc, slide, frame, level, n) for n in numbers]
    etag = etag_for("\n".join(image.key for image in images) + "\n" + media.content_type)
    headers = {"ETag": f'"{etag}"', "Cache-Control": svc.cache_control}
    if request.if_none_match.contains(etag):
        for image in images:
            if image.not_modified is not None:
                image.not_modified()
        return Response(status=304, headers=headers)
    payloads = [image.load() for image in images]
    hit = all(image.outcome.get(CACHE) == HIT for image in images)
    headers[CACHE_HEADER] = HIT if hit else MISS
    if not media.multipart:
        return Response(payloads[0], content_type=media.content_type, headers=headers)
    body, boundary = dicomweb.multipart(payloads, etag, media.part_content_type)
    content_type = f"{media.content_type}; boundary={boundary}"
    return Response(body, content_type=content_type, headers=headers)
