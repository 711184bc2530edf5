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
import tifffile
from dicomweb_client.api import DICOMwebClient
from highdicom._standard_utils import (
    get_iod_module_map,
    get_module_attribute_map,
    get_sop_class_iod_map,
)
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
    # The list changes as sources come and go: revalidated each time.
    assert api.get("/dicomweb/studies").headers["Cache-Control"] == "no-cache"
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
        stored = {
            4 - i: (page.dataoffsets, page.databytecounts) for i, page in enumerate(tif.pages)
        }
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


# --- WADO-RS metadata -------------------------------------------------------------------

# Bulk data is not part of metadata (PS3.18 10.4.1.2).
BULK = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})
# Functional group macros the WSI IOD makes optional (U) or requires only when the
# dimension organization is not TILED_FULL (C): PS3.3 Table A.32.8-2. highdicom's
# module table lists every macro of the functional groups module flat.
OPTIONAL_FUNCTIONAL_GROUPS = frozenset(
    {
        "ReferencedImageSequence",
        "DerivationImageSequence",
        "RealWorldValueMappingSequence",
        "SpecimenReferenceSequence",
        "FrameContentSequence",
        "PlanePositionSlideSequence",
    }
)


def items_at(dataset: pydicom.Dataset, path: list[str]) -> list[pydicom.Dataset]:
    items = [dataset]
    for keyword in path:
        items = [child for item in items if keyword in item for child in item[keyword].value]
    return items


def iod_problems(dataset: pydicom.Dataset) -> list[str]:
    """Type 1 and type 2 attributes of the IOD's mandatory modules that are absent (or
    empty, for type 1), by highdicom's tables of the standard."""
    iod = get_sop_class_iod_map()[dataset.SOPClassUID]
    attributes = get_module_attribute_map()
    problems = []
    for module in get_iod_module_map()[iod]:
        if module["usage"] != "M":
            continue
        for attribute in attributes[module["key"]]:
            keyword, kind, path = attribute["keyword"], attribute["type"], attribute["path"]
            if kind not in ("1", "2") or keyword in BULK:
                continue
            if (
                path[:1] == ["SharedFunctionalGroupsSequence"]
                and (set(path[1:2]) | {keyword}) & OPTIONAL_FUNCTIONAL_GROUPS
            ):
                continue
            for item in items_at(dataset, path):
                name = "/".join([*path, keyword])
                if keyword not in item:
                    problems.append(f"{module['key']}: {name} (type {kind}) is absent")
                elif kind == "1" and item[keyword].is_empty:
                    problems.append(f"{module['key']}: {name} (type 1) is empty")
    return problems


def test_metadata_is_a_valid_wsi_iod_per_level(api: ApiServer, sources: dict[str, str]) -> None:
    for name, photometric in (("pyramid", "RGB"), ("lzw", "YBR_FULL")):
        source = sources[name]
        study = study_of(api, source)
        (series,) = series_of(api, study)
        response = api.get(f"/dicomweb/studies/{study}/series/{series}/metadata")
        assert response.status_code == 200 and response.headers["Content-Type"] == DICOM_JSON
        datasets = [pydicom.Dataset.from_json(d) for d in response.json()]
        grid = api.get(f"/item/{source}/tiles").json()
        assert len(datasets) == grid["levels"]
        for index, dataset in enumerate(datasets):
            assert iod_problems(dataset) == [], (name, index)
            scale = 2**index
            assert dataset.SOPClassUID == WSI_SOP_CLASS
            assert dataset.DimensionOrganizationType == "TILED_FULL"
            assert dataset.ImageType[0] == ("ORIGINAL" if index == 0 else "DERIVED")
            assert dataset.ImageType[2] == "VOLUME"
            assert dataset.TotalPixelMatrixColumns == math.ceil(grid["sizeX"] / scale)
            assert dataset.TotalPixelMatrixRows == math.ceil(grid["sizeY"] / scale)
            across = math.ceil(dataset.TotalPixelMatrixColumns / 256)
            down = math.ceil(dataset.TotalPixelMatrixRows / 256)
            assert (dataset.Rows, dataset.Columns, dataset.NumberOfFrames) == (
                256,
                256,
                across * down,
            )
            assert dataset.PhotometricInterpretation == photometric
            assert dataset.SamplesPerPixel == 3
            assert len(dataset.OpticalPathSequence[0].ICCProfile) > 128
            assert dataset.AvailableTransferSyntaxUID == JPEG_BASELINE
            assert dataset.StudyInstanceUID == study and dataset.SeriesInstanceUID == series
            measures = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
            if grid.get("mm_x"):
                expected = [grid["mm_y"] * scale, grid["mm_x"] * scale]
                assert [float(v) for v in measures.PixelSpacing] == pytest.approx(expected)
            else:
                assert [float(v) for v in measures.PixelSpacing] == [0.001 * scale] * 2
                assert "nominal" in dataset.ImageComments
        one = api.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/"
            f"{datasets[1].SOPInstanceUID}/metadata"
        )
        assert pydicom.Dataset.from_json(one.json()[0]) == datasets[1]
        assert len(api.get(f"/dicomweb/studies/{study}/metadata").json()) == len(datasets)


# --- frames, caching, generations, access ------------------------------------------------


def instance_path(api: ApiServer, source: str, level_index: int = 0) -> str:
    study = study_of(api, source)
    (series,) = series_of(api, study)
    instances = qido(api, f"/studies/{study}/series/{series}/instances")
    uid = value(instances[level_index], "00080018")
    return f"/dicomweb/studies/{study}/series/{series}/instances/{uid}"


def test_frames_media_types_and_caching(api: ApiServer, sources: dict[str, str]) -> None:
    source = sources["pyramid"]
    path = instance_path(api, source) + "/frames"
    # Frame 14 of the full-resolution level (12 x 8 tiles): tile (1, 1).
    response = api.get(path + "/14", headers={"Accept": JPEG_ACCEPT})
    assert response.status_code == 200, response.text
    content_type = response.headers["Content-Type"]
    assert content_type.startswith('multipart/related; type="image/jpeg"; boundary=')
    boundary = content_type.rsplit("boundary=", 1)[1].encode()
    head, rest = response.content.split(b"\r\n\r\n", 1)
    assert head == b"--" + boundary + b"\r\nContent-Type: image/jpeg; transfer-syntax=" + (
        JPEG_BASELINE.encode()
    )
    assert rest == zxy(api, source, 4, 1, 1) + b"\r\n--" + boundary + b"--\r\n"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    etag = response.headers["ETag"]
    again = api.get(path + "/14", headers={"Accept": JPEG_ACCEPT, "If-None-Match": etag})
    assert again.status_code == 304
    # Several frames in one answer, in the order asked.
    both = api.get(path + "/2,1", headers={"Accept": "multipart/related; type=image/jpeg"})
    parts = both.content.split(b"\r\n\r\n")[1:]
    assert parts[0].startswith(zxy(api, source, 4, 1, 0)) and parts[1].startswith(
        zxy(api, source, 4, 0, 0)
    )
    single = api.get(path + "/1", headers={"Accept": "image/jpeg"})
    assert single.content == zxy(api, source, 4, 0, 0)
    assert single.headers["Content-Type"] == f"image/jpeg; transfer-syntax={JPEG_BASELINE}"
    octets = 'multipart/related; type="application/octet-stream"'
    assert api.get(path + "/1", headers={"Accept": octets}).status_code == 406
    anything = api.get(path + "/1", headers={"Accept": octets + "; transfer-syntax=*"})
    assert anything.headers["Content-Type"].startswith(octets + "; boundary=")
    assert (
        b"Content-Type: application/octet-stream; transfer-syntax=" + (JPEG_BASELINE.encode())
        in anything.content
        and zxy(api, source, 4, 0, 0) in anything.content
    )
    assert api.get(path + "/97").status_code == 404  # 96 frames
    assert api.get(path + "/0").status_code == 400
    assert api.get(path + "/1,x").status_code == 400


def test_a_changed_file_gets_new_uids(
    api: ApiServer, images: dict[str, Path], source_root: Path
) -> None:
    path = source_root / "dicomweb-changing.tiff"
    shutil.copyfile(images["lzw"], path)
    source = api.register(path)
    old = instance_path(api, source)
    old_study = study_of(api, source)
    assert api.get(old + "/frames/1").status_code == 200
    shutil.copyfile(images["deflate"], path)
    assert api.register(path) == source  # the same path: described again, new generation
    new_study = study_of(api, source)
    assert new_study != old_study
    assert qido(api, "/studies", StudyInstanceUID=new_study)
    deadline = time.monotonic() + 15  # every api process sees the new generation
    while api.get(old + "/metadata").status_code != 404:
        assert time.monotonic() < deadline, "the old study is still served"
        time.sleep(0.2)
    assert api.get(instance_path(api, source) + "/frames/1").status_code == 200


def test_signed_mode_covers_dicomweb(
    start_api: Any, tilecast_env: dict[str, str], sources: dict[str, str]
) -> None:
    keys = "k:dicomweb-secret-0123456789"
    api = start_api(
        {**tilecast_env, "TILECAST_ACCESS_MODE": "signed", "TILECAST_SIGNING_KEYS": keys}
    )
    signing_keys = signing.parse_keys(keys)
    expires = int(time.time()) + 600
    source = sources["pyramid"]
    item_grant = signing.sign(f"/item/{source}/", expires, signing_keys)
    metadata = api.get(f"/item/{source}/tiles", params=item_grant)
    generation = int(metadata.headers["X-Tilecast-Generation"])
    study = dicomuids.study_uid(source, generation)
    series = f"/dicomweb/studies/{study}/series"
    assert api.get(series).status_code == 401
    assert api.get(series, params=item_grant).status_code == 200
    # A grant of the item's DICOMweb only; another item's grant is refused.
    dicomweb_grant = signing.sign(f"/item/{source}/dicomweb/", expires, signing_keys)
    assert api.get(series, params=dicomweb_grant).status_code == 200
    other = signing.sign(f"/item/{sources['lzw']}/", expires, signing_keys)
    assert api.get(series, params=other).status_code == 403
    # The grant in the path, as a DICOMweb client keeps a base URL.
    grant_path = f"/signed/k/{expires}/{item_grant['signature']}"
    assert api.get(grant_path + series).status_code == 200
    # Searching every study lists the server's sources: a management grant.
    assert api.get("/dicomweb/studies", params=item_grant).status_code == 403
    manage = signing.sign("/manage/", expires, signing_keys)
    listed = api.get("/dicomweb/studies", params=manage)
    assert listed.status_code == 200 and study in {value(s, "0020000D") for s in listed.json()}


def test_openapi_documents_dicomweb(api: ApiServer) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {
        "/dicomweb/studies",
        "/dicomweb/studies/{study}/series/{series}/metadata",
        "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    } <= set(paths)


def test_each_frame_is_a_series(api: ApiServer, frame_images: dict[str, Path]) -> None:
    source = api.register(frame_images["ome"])  # uint16 channels, z and t planes
    meta = api.get(f"/item/{source}/tiles").json()
    study = study_of(api, source)
    series = qido(api, f"/studies/{study}/series")
    assert len(series) == len(meta["frames"]) > 1
    assert [value(s, "00200011") for s in series] == list(range(1, len(series) + 1))
    channel = meta["frames"][1].get("Channel")
    label = value(series[1], "0008103E")
    assert label.startswith("frame 1") and (channel is None or channel in label)
    uid = value(series[1], "0020000E")
    (top, *_) = [
        pydicom.Dataset.from_json(d)
        for d in api.get(f"/dicomweb/studies/{study}/series/{uid}/metadata").json()
    ]
    assert (top.PhotometricInterpretation, top.SamplesPerPixel) == ("MONOCHROME2", 1)
    assert "ICCProfile" not in top.OpticalPathSequence[0]
    assert iod_problems(top) == []
    client = WsiDicomWebClient(DICOMwebClient(api.url("/dicomweb")))
    slide = WsiDicom.open_web(client, study, [uid])
    z = meta["levels"] - 1
    frame = slide.read_encoded_tile(0, (0, 0), crop_to_image_boundary=False)
    assert frame == zxy(api, source, z, 0, 0, frame=1)
