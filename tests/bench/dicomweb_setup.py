"""Benchmark 11's DICOMweb place: the remote benchmark's 1 GB TIFF made a DICOM WSI
series by OrthancWSIDicomizer (its JPEG tiles copied, levels split into instances of
the dicomizer's default 10 MB: concatenations), stored into Orthanc with its DICOMweb
plugin (the test suite's, tests/orthancserver.py), read through the counting proxy that
adds the benchmark's latency to every answer.

The series' files and Orthanc's storage are kept beside the TIFF in the bench's image
folder (``remote-dicom/``: not the TIFF's folder, which Girder imports and moto's S3
uploads whole), so only the first run converts and uploads a gigabyte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import dicomslides
from tests.bench.harness import BenchError
from tests.bench.remote_setup import RemoteImage
from tests.orthancserver import DICOMWEB_ROOT, PASSWORD, USER, CountingProxy, OrthancServer

FOLDER = "remote-dicom"  # under the bench's image folder


@dataclass(frozen=True)
class DicomWebPlace:
    proxy: CountingProxy  # in front of Orthanc; counts requests, adds latency
    series: Path  # the series' files (for the local comparison)
    study_uid: str
    series_uid: str
    prepared_in: float  # seconds converting and uploading (0: kept from a run before)
    server: str  # Orthanc's and its DICOMweb plugin's versions

    @property
    def root(self) -> str:
        return f"dicomweb+{self.proxy.url}{DICOMWEB_ROOT}"

    @property
    def locator(self) -> str:
        return f"{self.root}/studies/{self.study_uid}/series/{self.series_uid}"

    def settings(self) -> dict[str, object]:
        """What a worker's settings need for this place."""
        return {
            "remote_allow": f"{self.root}/",
            "dicomweb_user": USER,
            "dicomweb_password": PASSWORD,
        }


def make_series(image: RemoteImage, image_dir: Path) -> tuple[Path, float]:
    """The TIFF converted (on first use); the folder and the seconds it took (0 when
    kept)."""
    folder = image_dir / FOLDER / "series"
    done = folder.parent / "series.done"
    if done.exists():
        return folder, 0.0
    started = time.monotonic()
    partial = folder.parent / "series.partial"
    if partial.exists():
        for path in partial.iterdir():
            path.unlink()
    dicomslides.orthanc(image.path, partial)
    partial.rename(folder)
    done.write_text("")
    return folder, time.monotonic() - started


@contextmanager
def dicomweb_place(image: RemoteImage, image_dir: Path) -> Iterator[DicomWebPlace]:
    """Orthanc holding the series, behind a counting proxy; stopped on exit."""
    series, seconds = make_series(image, image_dir)
    files = dicomslides.instances(series)
    store = image_dir / FOLDER / "orthanc"
    stored = store / "stored.json"  # the UIDs, once every instance is in the storage
    orthanc = OrthancServer(store)
    try:
        uids = json.loads(stored.read_text()) if stored.exists() else None
        if uids is None or len(orthanc.get("/instances")) != len(files):
            started = time.monotonic()
            study, series_uid = orthanc.upload(files)
            seconds += time.monotonic() - started
            uids = {"study": study, "series": series_uid}
            stored.write_text(json.dumps(uids))
        if len(orthanc.get("/instances")) != len(files):
            raise BenchError(f"Orthanc holds not the {len(files)} instances of the series")
        server = (
            f"Orthanc {orthanc.get('/system')['Version']} with its DICOMweb plugin "
            f"{orthanc.get('/plugins/dicom-web')['Version']}"
        )
        proxy = CountingProxy(orthanc.url)
        try:
            yield DicomWebPlace(proxy, series, uids["study"], uids["series"], seconds, server)
        finally:
            proxy.close()
    finally:
        orthanc.close()
