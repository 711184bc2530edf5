"""A DICOM whole-slide series read from a DICOMweb server (``dicomweb+https://...``).

wsidicom's web source (``WsiDicom.open_web``) over a dicomweb-client ``DICOMwebClient``
(workers/remote/dicomweb.py: the guarded session, the series description shared through
Redis). What is reported and how tiles are read is the local DICOM reader's
(:class:`~tilecast.workers.sources.dicomseries.DicomImage`): the same levels, frames and
associated images; a JPEG baseline frame passed through as the server sent it, JPEG 2000
frames decoded by workers/sources/codecs.py. Frames are fetched one WADO-RS request per
tile, in the syntax the server stores them in.
"""

from __future__ import annotations

from typing import Any

from pydicom.uid import UID, ExplicitVRLittleEndian
from wsidicom import WsiDicom
from wsidicom.errors import WsiDicomNotFoundError
from wsidicom.web.wsidicom_web_source import WsiDicomWebSource

from tilecast.common.errors import TilecastError, UnsupportedFormat, UnsupportedImage
from tilecast.common.fileidentity import Identity
from tilecast.common.remoteurls import RemoteSource, dicomweb_series
from tilecast.common.settings import Settings
from tilecast.workers.remote.dicomconcat import joined
from tilecast.workers.remote.dicomweb import DicomWebServer, SeriesClient, SeriesDescription
from tilecast.workers.remote.opening import check_still_allowed, remote_reader
from tilecast.workers.sources.dicomseries import (
    JPEG2000,
    JPEG_BASELINE,
    JPEG_OTHER,
    RLE,
    DicomImage,
    _unreadable,
)
from tilecast.workers.sources.reader import naming_format

# The syntaxes frames are read in (one is the stored one): those the local reader reads.
READ_SYNTAXES: list[UID] = [
    JPEG_BASELINE,
    *sorted(JPEG2000),
    *sorted(JPEG_OTHER),
    RLE,
    ExplicitVRLittleEndian,
]
VOLUME = "VOLUME"


class DicomWebSeries(DicomImage):
    """A series on a DICOMweb server, opened."""

    def __init__(self, source: RemoteSource, settings: Settings) -> None:
        super().__init__(str(source.url))
        check_still_allowed(source, settings)
        self.series = dicomweb_series(source.url)
        self._server = DicomWebServer(self.series, settings)
        try:
            instances = self._server.instances()
            self.identity: Identity = self._server.identity(instances)
            description = self._server.describe(instances, remote_reader(settings).shared)
            self._start(self._open(description), settings)
        except BaseException:
            self._release()
            raise

    @classmethod
    def opened(cls, source: RemoteSource, settings: Settings) -> DicomWebSeries:
        """The series, or the reason it cannot be read naming the format (as the reader
        registry names it for files)."""
        try:
            return cls(source, settings)
        except UnsupportedFormat:
            raise
        except UnsupportedImage as exc:
            raise naming_format(exc, cls) from None

    def _open(self, description: SeriesDescription) -> WsiDicom:
        if not any(
            _image_type(item) == VOLUME and description.syntaxes.get(uid) in READ_SYNTAXES
            for uid, item in description.metadata.items()
        ):
            raise UnsupportedImage(
                "the series has no pyramid level (VOLUME instance) in a transfer syntax "
                "this server reads"
            )
        try:
            client = SeriesClient(self._server, description)
            source = WsiDicomWebSource(
                client, UID(self.series.study), [UID(self.series.series)], READ_SYNTAXES
            )
            wsi = WsiDicom(joined(source, client), source_owned=True)
        except TilecastError:
            raise
        except WsiDicomNotFoundError:
            raise UnsupportedImage("the series has no pyramid level this server reads") from None
        except Exception as exc:
            raise _unreadable("the series cannot be read", exc) from None
        wsi.resize_cache(0)  # tilecast caches tiles itself
        return wsi

    def _release_source(self) -> None:
        self._server.close()


def _image_type(item: dict[str, Any]) -> str | None:
    values = item.get("00080008", {}).get("Value") or []
    return str(values[2]) if len(values) > 2 else None


def series_identity(source: RemoteSource, settings: Settings) -> Identity:
    """The identity of the series ``source`` names now: one QIDO-RS search."""
    check_still_allowed(source, settings)
    server = DicomWebServer(dicomweb_series(source.url), settings)
    try:
        return server.identity(server.instances())
    finally:
        server.close()
