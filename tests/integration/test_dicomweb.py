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


# --- WADO-RS through wsidicom -----------------------------------------------------------


def test_wsidicom_reads_jpeg_tiles_byte_for_byte(
    api: ApiServer, sources: dict[str, str], images: dict[str, Path]
) -> None:
    source = sources["pyramid"]
    slide = open_slide(api, study_of(api, source))
    assert [level.size.width for level in slide.levels] == [3000, 1500, 750, 375, 188]
    with tifffile.TiffFile(images["pyramid"]) as tif:
        stored = {4 - i: (page.dataoffsets, page.databytecounts) for i, page in enumerate(tif.pages)}
        data = images["pyramid"].read_bytes()
    for index, level in enumerate(slide.levels):
        z = 4 - index
        across, down = level.tiled_size.width, level.tiled_size.height
        for x, y in sample_tiles(across, down):
            # Uncropped: wsidicom re-encodes a tile it crops at the image's edge.
            frame = slide.read_encoded_tile(index, (x, y), crop_to_image_boundary=False)
            assert frame == zxy(api, source, z, x, y)
            # The file's own tile bytes, from its start-of-frame on (the tables come
            # from the file's shared JPEGTables).
            offsets, counts = stored[z]
            tile = data[offsets[y * across + x] : offsets[y * across + x] + counts[y * across + x]]
            assert tile[tile.find(b"\xff\xc0") : -2] in frame
            # Decoded, edge tiles cropped to the image: the same pixels.
            pixels = np.asarray(slide.read_tile(index, (x, y)).convert("RGB")).astype(float)
            height, width = pixels.shape[:2]
            assert psnr(pixels, decoded(frame)[:height, :width]) == 99.0


def test_wsidicom_reads_other_tiles_as_jpeg(api: ApiServer, sources: dict[str, str]) -> None:
    source = sources["lzw"]  # 1000 x 700, LZW: every frame is encoded by the tile path
    slide = open_slide(api, study_of(api, source))
    assert [level.size.width for level in slide.levels] == [1000, 500, 250]
    for index, level in enumerate(slide.levels):
        z = 2 - index
        for x, y in sample_tiles(level.tiled_size.width, level.tiled_size.height):
            frame = slide.read_encoded_tile(index, (x, y), crop_to_image_boundary=False)
            assert frame == zxy(api, source, z, x, y)  # the cached JPEG tile
            tile = decoded(frame)
            reference = decoded(zxy(api, source, z, x, y, encoding="PNG"))
            assert tile.shape == reference.shape == (256, 256, 3)
            assert psnr(tile, reference) >= 40
    region = slide.read_region((100, 100), 0, (300, 200))
    assert region.size == (300, 200)
