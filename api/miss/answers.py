"""The one hit and miss path of every image-like answer: tiles, thumbnails, regions,
pixels, histograms, band information, associated images and OME-Zarr chunks.

Each answer is named by its cache key. Loading it is one Redis round trip on a hit
(which also records, now and then, that its source is being viewed); a miss first
pays for the checks of its kind against the image's metadata (a 4xx before any worker
is asked), then goes through single-flight dispatch (api/miss/dispatch.py), and when a
worker answers that the source's file changed it renders once more under the new
generation. Every kind is counted the same way (``api_{kind}_hits`` /
``api_{kind}_misses``, 304s), and api/http.py turns every answer into the same
headers (ETag, Cache-Control, X-Tilecast-Cache) and 304s.

What differs between kinds is a :class:`Kind` (its name, for the counters) and what a
miss sends (:class:`Work`, built for a generation by the kind's handler).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tilecast.api.services import Services
from tilecast.common import activity, counters
from tilecast.common.cost import check_budget
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import SourceChanged, SourceGone
from tilecast.common.refusals import check_refused
from tilecast.common.registry import SourceRecord

CACHE = "cache"
# Set in Image.outcome when the image was rendered under a newer generation than its
# key's (the source's file changed while the request was served): the key it has.
RENEWED_KEY = "renewed-key"
HIT = "hit"
MISS = "miss"


@dataclass(frozen=True)
class Kind:
    """A kind of answer; its name labels its hit and miss counters (common/counters.py)."""

    name: str

    @property
    def hits(self) -> str:
        return counters.api_hits(self.name)

    @property
    def misses(self) -> str:
        return counters.api_misses(self.name)


TILE = Kind(counters.KIND_TILE)
THUMBNAIL = Kind(counters.KIND_THUMBNAIL)
REGION = Kind(counters.KIND_REGION)
PIXEL = Kind(counters.KIND_PIXEL)
HISTOGRAM = Kind(counters.KIND_HISTOGRAM)
BANDS = Kind(counters.KIND_BANDS)
ASSOCIATED = Kind(counters.KIND_ASSOCIATED)
ZARR_CHUNK = Kind(counters.KIND_ZARR_CHUNK)


@dataclass(frozen=True)
class Work:
    """What a miss sends: a task by name and its payload; ``after_send`` runs once the
    claimer has dispatched it (neighbour prefetch)."""

    task: str
    payload: dict[str, Any]
    after_send: Callable[[], None] | None = None


@dataclass(frozen=True)
class Image:
    """An answer named by its cache key; ``load`` reads (or renders) its bytes.

    Loading is deferred so that a conditional request can be answered from the key alone.
    """

    key: str
    content_type: str
    load: Callable[[], bytes]
    # Called instead of ``load`` when the client already has the image (a 304).
    not_modified: Callable[[], None] | None = None
    # What ``load`` found: {"cache": "hit"} or {"cache": "miss"}, sent as the
    # X-Tilecast-Cache header, which the load test classifies by; and RENEWED_KEY.
    outcome: dict[str, str] = field(default_factory=dict)


def answer(
    svc: Services,
    kind: Kind,
    source: str,
    content_type: str,
    key_of: Callable[[int], str],
    miss: Callable[[int], Work],
    after_hit: Callable[[int], None] | None = None,
) -> Image:
    """The answer of ``kind`` named ``key_of(generation)``: a cache hit (then
    ``after_hit(generation)``, when given), else ``miss(generation)`` -- which checks the
    request (raising its 4xx) and says what to send -- rendered through single-flight
    dispatch; counted, and its source recorded as viewed."""
    generation = svc.generations.get(source)
    key = key_of(generation)
    outcome: dict[str, str] = {}

    def render_at(gen: int) -> bytes:
        return fetch(svc, source, key_of(gen), miss(gen))

    render = _renewing(svc, source, generation, render_at, key_of, outcome)

    def load() -> bytes:
        data = cached(svc, key, source)
        if data is not None:
            svc.counters.add(kind.hits)
            outcome[CACHE] = HIT
            if after_hit is not None:
                after_hit(generation)
            return data
        svc.counters.add(kind.misses)
        outcome[CACHE] = MISS
        return render()

    return Image(key, content_type, load, _viewed(svc, source), outcome)


def metadata(svc: Services, source_id: str) -> dict[str, Any]:
    """The registered metadata; 410 when the source's file is gone (common/registry.py)."""
    return record(svc, source_id).metadata


def record(svc: Services, source_id: str) -> SourceRecord:
    """The registered record; 410 when the source's file is gone. Read fresh, it may be
    newer than this process's generation memo: the memo is dropped then, so the
    answer's X-Tilecast-Generation names this record's."""
    found = svc.registry.readable(source_id)
    if found.generation is not None and found.generation > svc.generations.get(source_id):
        svc.generations.forget(source_id)
    return found


def budget(
    svc: Services,
    meta: Mapping[str, Any],
    pixels: int,
    style: str | None,
    encoding: EncodingOptions,
) -> None:
    """A 400 ``over_budget`` when rendering ``pixels`` output pixels of this image with
    ``style`` into ``encoding`` would cost more than TILECAST_MAX_REQUEST_COST."""
    bands = int(meta.get("bandCount") or 3)
    check_budget(pixels, style, bands, encoding, svc.settings.max_request_cost)


def fetch(svc: Services, source: str, key: str, work: Work) -> bytes:
    """The value of ``key``, rendered by ``work`` once however many ask (single-flight
    dispatch, waiting on completion)."""

    def send() -> str:
        queue = svc.sender.send(work.task, work.payload)
        if work.after_send is not None:
            work.after_send()
        return queue

    # A render stopped by its time limit a moment ago is not tried again at once.
    check_refused(svc.state, key)
    try:
        return svc.dispatcher.fetch(key, lookup=lambda: svc.cache.get(key), send=send)
    except (SourceChanged, SourceGone):
        # A worker found the source's file changed and registered it again: this
        # process asks for the new generation at once, not after generation_ttl.
        svc.generations.forget(source)
        raise


def cached(svc: Services, key: str, source: str) -> bytes | None:
    """GET ``key``; about once every few seconds per source and process the GET also
    records that ``source`` is being viewed, in the same round trip (common/activity.py)."""
    if not svc.activity.due(source):
        return svc.cache.get(key)
    try:
        return activity.get_and_touch(svc.cache.client, key, source)
    except Exception:
        svc.activity.forget(source)  # touch again on the next request
        raise


def _renewing(
    svc: Services,
    source: str,
    generation: int,
    render_at: Callable[[int], bytes],
    key_of: Callable[[int], str],
    outcome: dict[str, str],
) -> Callable[[], bytes]:
    """Render at ``generation``; when a worker answers that the source's file changed
    since (a newer generation is registered: this process's memo was behind), render
    once more at the new generation, whose key the answer then names
    (``outcome[RENEWED_KEY]``, the ETag's source): the viewer gets the new file's
    answer instead of a 503."""

    def render() -> bytes:
        try:
            return render_at(generation)
        except SourceChanged:
            current = svc.generations.get(source)  # fetch dropped the memo
            if current <= generation:
                raise
            outcome[RENEWED_KEY] = key_of(current)
            return render_at(current)

    return render


def _viewed(svc: Services, source: str) -> Callable[[], None]:
    return lambda: not_modified(svc, source)


def not_modified(svc: Services, source: str) -> None:
    """What a 304 does: count it, and record the viewing (a round trip only when the
    activity memo says it is due)."""
    svc.counters.add(counters.API_NOT_MODIFIED)
    if svc.activity.due(source):
        try:
            activity.touch(svc.cache.client, source)
        except Exception:  # a 304 needs no Redis; activity is best effort here
            svc.activity.forget(source)
