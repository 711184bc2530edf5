"""DICOMweb over tilecast's sources (api/protocols/dicomweb_routes.py): which study a
UID names, how a level's frames are read, and the frames themselves through the one
tile path.

Studies are found by UID among the registered sources (common/dicomwsi.py maps a
source to a study, its frames to series, its levels to instances; UIDs are derived,
common/dicomuids.py). Each api process keeps the sources' slides by study UID; a UID
it does not know reloads them from the registry (one HVALS of the records; reloads
are spaced :data:`RELOAD_INTERVAL` seconds apart and shared by concurrent askers, so
made-up UIDs cost little), and a slide whose
source has moved to a newer generation is dropped the same way: its old UIDs then
answer 404.

A DICOM frame is a ``zxy`` tile in the default encoding (JPEG): the same key, the
same cache entry, the same miss path (api/handlers/tiles.py) -- a tile the file
stores as JPEG is passed through byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flask import current_app

from tilecast.api.handlers import tiles
from tilecast.api.miss.answers import Image
from tilecast.api.parsing import parse_encoding
from tilecast.api.services import Services
from tilecast.common.dicomwsi import (
    JPEG_BASELINE,
    JPEG_MEDIA_TYPE,
    PixelFormat,
    Slide,
    frame_tile,
    study_record,
)
from tilecast.common.errors import BadRequest, NotFound, TilecastError, UnknownSource
from tilecast.common.jpegheader import NotJpeg, read_header
from tilecast.common.registry import SourceRecord
from tilecast.common.tiles import TileRequest

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 0.25
INDEX = "tilecast.dicomweb_index"
FORMATS = "tilecast.dicomweb_formats"
# Far more than one api process serves at once; past it the memo starts afresh.
MAX_FORMATS = 100_000
# Frames one request may ask for (each is a tile fetched in turn).
MAX_FRAMES = 256
MAX_FRAME_DIGITS = 10


class NotAcceptable(TilecastError):
    """The client accepts no media type the frames are offered in."""

    status = 406
    code = "not_acceptable"


class UnknownStudy(NotFound):
    code = "unknown_study"


def slide_of(record: SourceRecord, generation: int) -> Slide:
    return Slide(record.id, record.name, generation, record.created, record.metadata)


def _describable(record: SourceRecord, generation: int) -> Slide | None:
    """The record's slide, or None when its metadata cannot make one (a record written by
    another tool, or by an older tilecast): one odd record must not fail every search."""
    try:
        slide = slide_of(record, generation)
        study_record(slide)
        if slide.grid.levels < 1 or slide.frame_count < 1:
            raise ValueError("no level or no frame")
    except Exception as exc:
        log.warning("source %s is left out of DICOMweb: %r", record.id, exc)
        return None
    return slide


class SlideIndex:
    """This process's slides by study UID (module docstring)."""

    def __init__(self) -> None:
        self._by_study: dict[str, Slide] = {}
        self._loaded = -math.inf
        self._lock = threading.Lock()
        self._reloading = threading.Lock()

    def all(self, svc: Services) -> list[Slide]:
        """Every readable registered source, oldest first, read fresh."""
        slides = []
        for record in svc.registry.all():
            if record.unreadable is not None:
                continue
            generation = record.generation
            if generation is None:
                generation = svc.registry.generation(record.id)
            if generation is None:
                continue  # removed meanwhile
            slide = _describable(record, generation)
            if slide is not None:
                slides.append(slide)
        with self._lock:
            self._by_study = {slide.study_uid: slide for slide in slides}
            self._loaded = time.monotonic()
        return slides

    def find(self, svc: Services, study: str) -> Slide:
        """The slide whose study UID is ``study``: 404 when no current source has it."""
        asked = time.monotonic()
        slide = self._current(svc, self._by_study.get(study))
        if slide is None:
            with self._reloading:
                # Concurrent misses share one reload; reloads are spaced at least
                # RELOAD_INTERVAL apart, so made-up UIDs cannot hammer the registry.
                if self._loaded < asked:
                    time.sleep(max(0.0, self._loaded + RELOAD_INTERVAL - time.monotonic()))
                    self.all(svc)
            slide = self._current(svc, self._by_study.get(study))
        if slide is None:
            raise UnknownStudy(f"unknown study {study!r}")
        return slide

    @staticmethod
    def _current(svc: Services, slide: Slide | None) -> Slide | None:
        if slide is None:
            return None
        try:
            generation = svc.generations.get(slide.source)
        except UnknownSource:
            return None
        if generation > slide.generation:
            return None  # the file changed: its study has new UIDs
        if generation < slide.generation:
            # Read fresh from the registry, the slide is newer than this process's
            # generation memo: tiles must be asked for under the slide's generation.
            svc.generations.forget(slide.source)
        return slide


def index() -> SlideIndex:
    return current_app.extensions.setdefault(INDEX, SlideIndex())  # type: ignore[no-any-return]


def frame_of(slide: Slide, series: str) -> int:
    """The tilecast frame whose series UID is ``series`` (404 otherwise)."""
    frame = slide.frame_of(series)
    if frame is None:
        raise NotFound(f"unknown series {series!r} in this study")
    return frame


def level_of(slide: Slide, frame: int, instance: str) -> int:
    """The tilecast level whose instance UID is ``instance`` (404 otherwise)."""
    level = slide.level_of(frame, instance)
    if level is None:
        raise NotFound(f"unknown instance {instance!r} in this series")
    return level


def frame_image(svc: Services, slide: Slide, frame: int, level: int, number: int) -> Image:
    """DICOM frame ``number`` (1-based) of ``level``: its ``zxy`` tile in the default
    encoding, through the tile path (cache, else one render)."""
    place = frame_tile(slide.grid, level, number)
    if place is None:
        raise NotFound(f"frame {number} is past the last frame of this instance")
    encoding = parse_encoding({}, svc.settings)
    request = TileRequest(slide.source, level, place.x, place.y, frame=frame, encoding=encoding)
    return tiles.tile(svc, request)


@dataclass
class FormatMemo:
    """Each level's pixel format by (source, generation, frame, level): the first
    frame's JPEG header says it, and a generation never changes its tiles' format."""

    formats: dict[tuple[str, int, int, int], PixelFormat]
    lock: threading.Lock


def pixel_format(svc: Services, slide: Slide, frame: int, level: int) -> PixelFormat:
    """How the frames of ``level`` are to be read (its first frame's JPEG header)."""
    memo: FormatMemo = current_app.extensions.setdefault(FORMATS, FormatMemo({}, threading.Lock()))
    key = (slide.source, slide.generation, frame, level)
    found = memo.formats.get(key)
    if found is not None:
        return found
    data = frame_image(svc, slide, frame, level, 1).load()
    try:
        header = read_header(data)
    except NotJpeg as exc:
        raise TilecastError(f"a frame of this instance is not a JPEG: {exc}") from None
    found = PixelFormat(header.photometric, header.components)
    with memo.lock:
        if len(memo.formats) >= MAX_FORMATS:
            memo.formats.clear()
        memo.formats[key] = found
    return found


def parse_frame_numbers(text: str) -> list[int]:
    """``1,2,3`` -> [1, 2, 3]: 1-based frame numbers, at most :data:`MAX_FRAMES`."""
    parts = text.split(",")
    if len(parts) > MAX_FRAMES:
        raise BadRequest(f"at most {MAX_FRAMES} frames per request", parameter="frames")
    numbers = []
    for part in parts:
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or len(part) > MAX_FRAME_DIGITS:
            raise BadRequest("frames are 1-based numbers separated by commas", parameter="frames")
        number = int(part)
        if number < 1:
            raise BadRequest("frame numbers start at 1", parameter="frames")
        numbers.append(number)
    return numbers


# --- media types ----------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]
    quality: float


def media_ranges(accept: str | None) -> list[MediaRange]:
    """The Accept header's media ranges with their parameters (quoted values
    unquoted); none when the header is absent."""
    ranges = []
    for item in (accept or "").split(","):
        pieces = [piece.strip() for piece in item.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        ranges.append(MediaRange(pieces[0].lower(), params, quality))
    return ranges


def _jpeg_syntax_ok(params: dict[str, str]) -> bool:
    return params.get("transfer-syntax", "*") in ("*", JPEG_BASELINE)


OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class FramesMedia:
    """How a frames request is answered: a multipart/related message whose parts are
    ``part_type``, or (``multipart`` False) one bare JPEG."""

    multipart: bool
    part_type: str = JPEG_MEDIA_TYPE

    @property
    def part_content_type(self) -> str:
        """The parts' Content-Type, naming the transfer syntax they are in."""
        return f"{self.part_type}; transfer-syntax={JPEG_BASELINE}"

    @property
    def content_type(self) -> str:
        """The answer's Content-Type, less the multipart boundary."""
        if not self.multipart:
            return self.part_content_type
        return f'multipart/related; type="{self.part_type}"'


def frames_media(accept: str | None, count: int) -> FramesMedia:
    """How to answer a frames request: multipart/related of JPEG parts; or of
    ``application/octet-stream`` parts when the client asks for those with any
    transfer syntax (``transfer-syntax=*``: the server picks, and the part's
    Content-Type names the one it picked, PS3.18 8.7.3.5; dicom-microscopy-viewer asks
    so); or one bare JPEG, for a client that accepts only ``image/jpeg`` and asked one
    frame; 406 when the client accepts none of them (octet-stream without ``*`` means
    uncompressed pixels, which the api does not decode)."""
    every = media_ranges(accept)
    if not every:
        return FramesMedia(multipart=True)  # no preference: the standard's default
    ranges = [r for r in every if r.quality > 0]
    for media in ranges:
        if media.type in ("*/*", "multipart/*"):
            return FramesMedia(multipart=True)
        if media.type == "multipart/related":
            part_type = media.params.get("type", JPEG_MEDIA_TYPE).lower()
            if part_type in (JPEG_MEDIA_TYPE, "image/*", "*/*") and _jpeg_syntax_ok(media.params):
                return FramesMedia(multipart=True)
            if part_type == OCTETS and media.params.get("transfer-syntax") == "*":
                return FramesMedia(multipart=True, part_type=OCTETS)
    for media in ranges:
        single = media.type in (JPEG_MEDIA_TYPE, "image/*") and _jpeg_syntax_ok(media.params)
        if single and count == 1:
            return FramesMedia(multipart=False)
    raise NotAcceptable(
        'frames are offered as multipart/related; type="image/jpeg" (or type='
        f'"application/octet-stream"; transfer-syntax=*) in {JPEG_BASELINE} (JPEG baseline)'
    )


def multipart(parts: Iterable[bytes], seed: str, part_type: str) -> tuple[bytes, str]:
    """``(body, boundary)`` of a multipart/related message of parts of Content-Type
    ``part_type``. The boundary
    is derived from ``seed`` (the frames' keys), so one request always gets the same
    bytes; a part that happens to contain it gets a longer one."""
    payloads = list(parts)
    boundary = "tilecast-" + hashlib.sha256(seed.encode()).hexdigest()[:32]
    while any(boundary.encode() in payload for payload in payloads):
        boundary += "-" + hashlib.sha256(boundary.encode()).hexdigest()[:8]
    return b"".join(_parts(payloads, boundary, part_type)), boundary


def _parts(payloads: list[bytes], boundary: str, part_type: str) -> Iterator[bytes]:
    header = f"Content-Type: {part_type}\r\n\r\n".encode()
    for payload in payloads:
        yield b"--" + boundary.encode() + b"\r\n" + header + payload + b"\r\n"
    yield b"--" + boundary.encode() + b"--\r\n"
