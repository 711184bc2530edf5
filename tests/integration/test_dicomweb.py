"""DICOMweb over the running stack (api/protocols/dicomweb*.py): wsidicom opens
tilecast as a DICOMweb server through dicomweb-client and reads every level; the
metadata is read back with pydicom and checked with highdicom; QIDO searches,
frames' media types, UIDs across generations and access modes over real HTTP."""

from __future__ import annotations

import io
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
import tifffile
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from wsidicom import WsiDicom
from wsidicom.web import WsiDicomWebClient

from tests.conftest import ApiServer
from tilecast.common import dicomuids, signing
from tilecast.common.dicomwsi import JPEG_BASELINE, WSI_SOP_CLASS

pytestmark = pytest.mark.integration

DICOM_JSON = "application/dicom+json"
JPEG_ACCEPT = f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_BASELINE}'


def qido(api: ApiServer, path: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/dicomweb" + path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == DICOM_JSON
    return response.json()  # type: ignore[no-any-return]


def value(dataset: dict[str, Any], tag: str) -> Any:
    return dataset[tag]["Value"][0]


def study_of(api: ApiServer, source: str) -> str:
    generation = int(api.get(f"/item/{source}/tiles").headers["X-Tilecast-Generation"])
    return dicomuids.study_uid(source, generation)


def series_of(api: ApiServer, study: str) -> list[str]:
    return [value(s, "0020000E") for s in qido(api, f"/studies/{study}/series")]


def open_slide(api: ApiServer, study: str) -> WsiDicom:
    client = WsiDicomWebClient(DICOMwebClient(api.url("/dicomweb")))
    return WsiDicom.open_web(client, study, series_of(api, study)[:1])


def zxy(api: ApiServer, source: str, z: int, x: int, y: int, **params: Any) -> bytes:
    response = api.get(f"/item/{source}/tiles/zxy/{z}/{x}/{y}", params=params)
    assert response.status_code == 200, response.text
    return response.content


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(float)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def sample_tiles(across: int, down: int) -> list[tuple[int, int]]:
    """The corners and the middle: edge tiles and an inner one."""
    return sorted({(0, 0), (across - 1, down - 1), (across // 2, down // 2), (across - 1, 0)})


# --- QIDO-RS -----------------------------------------------------------------------------


def test_every_source_is_a_study(api: ApiServer, sources: dict[str, str]) -> None:
    studies = qido(api, "/studies")
    by_uid = {value(s, "0020000D"): s for s in studies}
    for source in (sources["pyramid"], sources["lzw"]):
        study = by_uid[study_of(api, source)]
        assert value(study, "00080061") == "SM"  # ModalitiesInStudy
        assert value(study, "00201206") == 1  # one series: a single-frame file
    uid = study_of(api, sources["pyramid"])
    assert [value(s, "0020000D") for s in qido(api, "/studies", StudyInstanceUID=uid)] == [uid]
    assert len(qido(api, "/studies", limit=1)) == 1
    assert len(qido(api, "/studies", limit=1, offset=1)) == 1
    assert qido(api, "/studies", offset=len(studies)) == []
    assert len(qido(api, "/studies", ModalitiesInStudy="SM")) == len(studies)
    assert qido(api, "/studies", Modality="CT") == []
    bad = api.get("/dicomweb/studies", params={"limit": "x"})
    assert bad.status_code == 400 and bad.json()["parameter"] == "limit"
    unknown = api.get("/dicomweb/studies", params={"NoSuchKey": "1"})
    assert unknown.status_code == 200 and "NoSuchKey" in unknown.headers["Warning"]


def test_series_and_instances_searches(api: ApiServer, sources: dict[str, str]) -> None:
    study = study_of(api, sources["pyramid"])
    (series,) = series_of(api, study)
    instances = qido(api, f"/studies/{study}/series/{series}/instances")
    assert len(instances) == 5  # one per level of 3000 x 2000 in 256-pixel tiles
    assert [value(i, "00480006") for i in instances] == [3000, 1500, 750, 375, 188]
    assert {value(i, "00080016") for i in instances} == {WSI_SOP_CLASS}
    assert all(value(i, "00083002") == JPEG_BASELINE for i in instances)
    # wsidicom's search: the study's instances by series, SOP class and modality.
    found = qido(
        api,
        f"/studies/{study}/instances",
        SeriesInstanceUID=series,
        SOPClassUID=WSI_SOP_CLASS,
        Modality="SM",
    )
    assert len(found) == 5
    everything = qido(api, "/instances", StudyInstanceUID=study)
    assert {value(i, "00080018") for i in everything} == {value(i, "00080018") for i in found}
    assert qido(api, "/series", StudyInstanceUID=study)[0]["0020000E"]["Value"] == [series]
    assert api.get(f"/dicomweb/studies/{study}/series/2.25.1/instances").status_code == 404
    assert api.get("/dicomweb/studies/2.25.1/series").status_code == 404
    assert api.get("/dicomweb/studies/not-a-uid/series").status_code == 404
