"""A series on a DICOMweb server: the requests tilecast makes to it, and what it learns
of the series once for every process.

Every request goes through :class:`GuardedSession`, the ``requests`` session the
dicomweb-client ``DICOMwebClient`` (and so wsidicom's web source) is given: no redirect
followed (the allow-list names what may be read), each request bounded by
``remote_timeout``, throttling and failures retried with backoff then answered 503 with
Retry-After, 401/403/404 mapped to ``remote_forbidden``/``remote_not_found``
(workers/remote/httpretry.py, as for plain HTTP objects), a short answer retried then
``remote_truncated``. The configured credentials (``TILECAST_DICOMWEB_TOKEN`` as a bearer
token, or ``TILECAST_DICOMWEB_USER``/``PASSWORD`` as HTTP basic) go in its headers; no
message names them.

Opening a series costs one QIDO-RS search of its instances (their UIDs are the series'
identity: DICOM instances never change under a UID, so another set of UIDs is another
series content). What wsidicom needs besides -- the series' WADO-RS metadata and each
instance's stored transfer syntax -- is a :class:`SeriesDescription`, kept in the cache
Redis under the server, study, series and that identity (workers/remote/shared.py), so
that another process or host opening the series pays the search and one Redis round
trip. Whoever describes it first learns each instance's transfer syntax from the
search's AvailableTransferSyntaxUID when the server gives it, else by asking for its
first frame in whatever syntax the server holds (``transfer-syntax=*``) and reading the
answer's content type -- once per concatenation, whose instances share their syntax: a
level split over many instances costs one request, not one each. Frames are then asked
for in that syntax, so the server sends its own bytes and never transcodes (a JPEG
frame passes through to the viewer as stored). How a concatenation's instances are read
as one level: workers/remote/dicomconcat.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pydicom.uid import UID
from wsidicom.web.wsidicom_web_client import WsiDicomWebClient

from tilecast.common.errors import RemoteNotFound, RemoteTruncated, RemoteUnavailable
from tilecast.common.fileidentity import Identity
from tilecast.common.remoteurls import DicomWebSeries
from tilecast.common.settings import Settings
from tilecast.workers.remote.httpretry import Retry, check_status, connection_failure, retrying
from tilecast.workers.remote.pinned import mount_pinned
from tilecast.workers.remote.shared import SharedBlocks

log = logging.getLogger(__name__)

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
SOP_CLASS, SOP_INSTANCE = "00080016", "00080018"
TRANSFER_SYNTAX, AVAILABLE_SYNTAXES = "00020010", "00083002"
CONCATENATION = "00209161"  # ConcatenationUID, shared by a concatenation's instances
# The largest answer read (metadata of a large series, a frame): a server sending more
# is refused rather than held.
MAX_ANSWER_BYTES = 256 * 1024**2
CHUNK = 1024 * 1024
POOL_SIZE = 16
# "transfer-syntax=1.2.840.10008.1.2.4.50" in a content type (the answer's or a part's).
SYNTAX_PARAMETER = re.compile(rb"transfer-syntax=\"?([0-9.]+)")
# What a part's media type means when it names no syntax (PS3.18 8.7.3.5.2 defaults).
DEFAULT_SYNTAXES = {
    b"image/jpeg": "1.2.840.10008.1.2.4.50",
    b"image/jp2": "1.2.840.10008.1.2.4.90",
    b"application/octet-stream": "1.2.840.10008.1.2.1",
}
ASK_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


class GuardedSession(requests.Session):
    """A session whose every request is bounded, retried, mapped to tilecast's remote
    errors, read whole (bounded) before it is returned, and never redirected."""

    def __init__(self, place: str, settings: Settings) -> None:
        super().__init__()
        mount_pinned(self, settings, connections=2, pool_size=POOL_SIZE)
        self.place = place
        self.trust_env = False  # no proxy or .netrc credentials of the worker's environment
        self._timeout = settings.remote_timeout
        self._retries = settings.remote_retries
        self._backoff = settings.remote_backoff
        if settings.dicomweb_token:
            self.headers["Authorization"] = f"Bearer {settings.dicomweb_token}"
        elif settings.dicomweb_user:
            self.auth = (settings.dicomweb_user, settings.dicomweb_password)

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True  # read here, bounded
        kwargs["timeout"] = (self._timeout, self._timeout)
        where = self.place + urlsplit(url).path  # no query string in messages
        if not url.startswith(self.place + "/"):
            # dicomweb-client builds every URL from the root it was given: anything
            # else (a BulkDataURI naming another host) is not fetched.
            raise RemoteUnavailable(f"{self.place} named another server's URL; not fetched")

        def attempt() -> requests.Response:
            try:
                response = super(GuardedSession, self).request(method, url, *args, **kwargs)
            except requests.RequestException as exc:
                raise connection_failure(self.place, exc) from exc
            check_status(response, self.place, where)
            _read_whole(response, self.place)
            return response

        return retrying(attempt, self.place, self._retries, self._backoff)


def _read_whole(response: requests.Response, place: str) -> None:
    """The answer's body read into ``response.content`` (at most MAX_ANSWER_BYTES);
    Retry when the server stopped short of what it announced."""
    body = bytearray()
    try:
        with response:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise RemoteUnavailable(f"{place} sent more than {MAX_ANSWER_BYTES} bytes")
    except requests.RequestException:
        raise Retry(RemoteTruncated(f"{place} stopped sending"), None) from None
    # requests then serves .content and iter_content() from these bytes.
    response._content = bytes(body)
    response._content_consumed = True


@dataclass(frozen=True)
class SeriesDescription:
    """What wsidicom needs to open a series besides its frames: each whole-slide
    instance's WADO-RS metadata (DICOM JSON) and stored transfer syntax."""

    metadata: dict[str, dict[str, Any]]  # SOP instance UID -> its DICOM JSON
    syntaxes: dict[str, str | None]  # SOP instance UID -> transfer syntax (None: unknown)

    def encoded(self) -> bytes:
        text = json.dumps({"metadata": self.metadata, "syntaxes": self.syntaxes})
        return zlib.compress(text.encode(), 6)

    @classmethod
    def decoded(cls, data: bytes) -> SeriesDescription:
        value = json.loads(zlib.decompress(data))
        return cls(value["metadata"], value["syntaxes"])


class DicomWebServer:
    """One series' server: the dicomweb-client over a :class:`GuardedSession`."""

    def __init__(self, series: DicomWebSeries, settings: Settings) -> None:
        self.series = series
        parts = urlsplit(series.root)
        self.place = f"{parts.scheme}://{parts.netloc}"
        self.session = GuardedSession(self.place, settings)
        self.client = DICOMwebClient(series.root, session=self.session)
        self.client.set_http_retry_params(retry=False)  # the session retries

    def instances(self) -> list[dict[str, Any]]:
        """QIDO-RS: the series' instances (UIDs, SOP classes, transfer syntaxes when the
        server lists them); RemoteNotFound when the series has none."""
        found = self.client.search_for_instances(
            self.series.study,
            self.series.series,
            fields=[AVAILABLE_SYNTAXES],
        )
        if not found:
            raise RemoteNotFound(
                f"{self.place} holds no instance of series {self.series.series} of study "
                f"{self.series.study}"
            )
        return found

    def identity(self, instances: list[dict[str, Any]]) -> Identity:
        uids = sorted(_value(item, SOP_INSTANCE) or "" for item in instances)
        digest = hashlib.sha256("\n".join(uids).encode()).hexdigest()
        url = f"dicomweb+{self.series.root}/studies/{self.series.study}/series/{self.series.series}"
        return {"url": url, "instances": digest}

    def describe(
        self, instances: list[dict[str, Any]], shared: SharedBlocks | None
    ) -> SeriesDescription:
        """The series' description: from the cache Redis when another process made it
        for this set of instances, else from the server (then shared)."""
        key = (
            "dicomweb:"
            + hashlib.sha256(
                json.dumps([self.series.root, self.identity(instances)]).encode()
            ).hexdigest()[:32]
        )
        if shared is not None:
            held = shared.blocks(key, [0])[0]
            if held is not None:
                try:
                    return SeriesDescription.decoded(held)
                except (ValueError, KeyError, zlib.error):
                    log.warning("a shared DICOMweb series description does not parse")
        description = self._described(instances)
        if shared is not None:
            shared.put_blocks(key, {0: description.encoded()})
        return description

    def _described(self, instances: list[dict[str, Any]]) -> SeriesDescription:
        listed = {
            _value(item, SOP_INSTANCE): item.get(AVAILABLE_SYNTAXES, {}).get("Value")
            for item in instances
        }
        metadata: dict[str, dict[str, Any]] = {}
        for item in self.client.retrieve_series_metadata(self.series.study, self.series.series):
            uid = _value(item, SOP_INSTANCE)
            if uid is not None and _value(item, SOP_CLASS) == WSI_SOP_CLASS:
                metadata[uid] = _without_bulk_data(item)
        syntaxes: dict[str, str | None] = {}
        asked: dict[str, str | None] = {}  # concatenation (or instance) -> stored syntax
        for uid, item in metadata.items():
            syntax = _value(item, TRANSFER_SYNTAX)
            available = listed.get(uid)
            if syntax is None and available and len(available) == 1:
                syntax = str(available[0])
            if syntax is None:
                # A concatenation's instances are one image's frames split up, stored
                # alike: one frame of one of them tells the syntax of all.
                group = _value(item, CONCATENATION) or uid
                if group not in asked:
                    asked[group] = self._stored_syntax(uid)
                syntax = asked[group]
            syntaxes[uid] = syntax
        return SeriesDescription(metadata, syntaxes)

    def _stored_syntax(self, uid: str) -> str | None:
        """The transfer syntax the server holds an instance's frames in: its first frame
        asked for as stored, the answer's content type read."""
        series = self.series
        url = (
            f"{series.root}/studies/{series.study}/series/{series.series}/instances/{uid}/frames/1"
        )
        response = self.session.get(url, headers={"Accept": ASK_STORED})
        head = response.headers.get("Content-Type", "").encode()
        part = response.content[:2048].split(b"\r\n\r\n", 1)[0]
        for text in (head, part):
            match = SYNTAX_PARAMETER.search(text)
            if match:
                return match[1].decode()
        for media, syntax in DEFAULT_SYNTAXES.items():
            if media in part.lower():
                return syntax
        log.info("DICOMweb: %s does not say how instance %s is stored", self.place, uid)
        return None

    def close(self) -> None:
        self.session.close()


class SeriesClient(WsiDicomWebClient):
    """wsidicom's web client over a :class:`SeriesDescription`: instances and their
    metadata from it, frames by WADO-RS in each instance's stored syntax."""

    def __init__(self, server: DicomWebServer, description: SeriesDescription) -> None:
        super().__init__(server.client)
        self._description = description

    def get_wsi_instances(
        self, study_uid: UID, series_uids: Iterable[UID]
    ) -> Iterator[tuple[UID, UID, set[UID] | None]]:
        series = next(iter(series_uids))
        for uid in self._description.metadata:
            syntax = self._description.syntaxes.get(uid)
            yield UID(series), UID(uid), {UID(syntax)} if syntax else set()

    def get_annotation_instances(
        self, study_uid: UID, series_uids: Iterable[UID]
    ) -> Iterator[tuple[UID, UID, set[UID] | None]]:
        return iter(())  # tilecast reads no annotations: no search for them

    def get_instance(self, study_uid: UID, series_uid: UID, instance_uid: UID) -> Dataset:
        # No bulk data handler: the description holds no BulkDataURI (see _described),
        # and pydicom inspects a handler's signature for every element it converts
        # (40% of opening a large series).
        return Dataset.from_json(self._description.metadata[str(instance_uid)])

    def is_transfer_syntax_supported(
        self, study_uid: UID, series_uid: UID, instance_uid: UID, transfer_syntax: UID
    ) -> bool:
        # Only the stored syntax is asked for: a server's transcoding would re-encode
        # frames (lossy JPEG of a lossless image), and some answer 500 rather than 406.
        return False


def _without_bulk_data(value: Any) -> Any:
    """DICOM JSON with each BulkDataURI left out (the element then has no value): what
    it names (an ICC profile, say) is never fetched -- the tiles do not use it, and the
    URI could name any host."""
    if isinstance(value, dict):
        return {
            key: _without_bulk_data(item) for key, item in value.items() if key != "BulkDataURI"
        }
    if isinstance(value, list):
        return [_without_bulk_data(item) for item in value]
    return value


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = item.get(tag, {}).get("Value")
    return str(values[0]) if values else None
