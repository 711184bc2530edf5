"""The DICOMweb view's vocabulary (common/dicomuids.py, dicomjson.py, dicomquery.py,
dicomwsi.py, jpegheader.py) and its HTTP helpers (api/protocols/dicomweb.py)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import simplejpeg
from PIL import ImageCms
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from tilecast.api.protocols import dicomweb
from tilecast.common import dicomuids, signing
from tilecast.common.dicomjson import ATTRIBUTES, keyword_of, to_json
from tilecast.common.dicomquery import MAX_LIMIT, parse_query
from tilecast.common.dicomwsi import (
    JPEG_BASELINE,
    PixelFormat,
    Slide,
    frame_tile,
    instance_metadata,
    srgb_profile,
)
from tilecast.common.errors import BadRequest
from tilecast.common.jpegheader import NotJpeg, read_header

META = {"sizeX": 3000, "sizeY": 2000, "tileWidth": 256, "tileHeight": 256, "levels": 5}


def test_the_attribute_table_agrees_with_the_standard() -> None:
    for keyword, (tag, vr) in ATTRIBUTES.items():
        assert tag_for_keyword(keyword) == int(tag, 16), keyword
        assert keyword_for_tag(int(tag, 16)) == keyword
        assert vr in dictionary_VR(int(tag, 16)).split(" or "), keyword
    assert keyword_of("0020000d") == keyword_of("StudyInstanceUID") == "StudyInstanceUID"
    assert keyword_of("NoSuchThing") is None


def test_uids_are_stable_uuid_uids_per_generation() -> None:
    study = dicomuids.study_uid("abc", 1)
    assert study == dicomuids.study_uid("abc", 1)
    assert study.startswith("2.25.") and len(study) <= 64 and dicomuids.is_uid(study)
    assert study != dicomuids.study_uid("abc", 2) != dicomuids.study_uid("abd", 1)
    uids = {
        dicomuids.series_uid("abc", 1, 0),
        dicomuids.series_uid("abc", 1, 1),
        dicomuids.instance_uid("abc", 1, 0, 0),
        dicomuids.instance_uid("abc", 1, 0, 1),
        dicomuids.instance_uid("abc", 1, 1, 0),
    }
    assert len(uids) == 5 and study not in uids
    for bad in ("", "2.25.01", "2..5", "a.b", "1" * 65, "2.25.-1"):
        assert not dicomuids.is_uid(bad)


def jpeg(bands: int, subsampling: str = "444") -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (64, 48, bands), dtype=np.uint8)
    colorspace = "GRAY" if bands == 1 else "RGB"
    return bytes(
        simplejpeg.encode_jpeg(pixels, colorspace=colorspace, colorsubsampling=subsampling)
    )


def test_jpeg_headers_name_the_photometric_interpretation() -> None:
    header = read_header(jpeg(3, "420"))
    assert (header.width, header.height, header.components) == (48, 64, 3)
    assert header.sampling == ((2, 2), (1, 1), (1, 1))
    assert header.photometric == "YBR_FULL_422"
    assert read_header(jpeg(3, "444")).photometric == "YBR_FULL"
    assert read_header(jpeg(1)).photometric == "MONOCHROME2"
    # Component ids R, G, B (large_image's RGB TIFF tiles): not transformed.
    data = bytearray(jpeg(3, "444"))
    sof = data.find(b"\xff\xc0")
    for i, value in enumerate(b"RGB"):
        data[sof + 10 + i * 3] = value
    assert read_header(bytes(data)).photometric == "RGB"
    for bad in (b"", b"GIF89a", jpeg(3)[:20], b"\xff\xd8\xff\xda\x00\x02"):
        with pytest.raises(NotJpeg):
            read_header(bad)


def test_qido_queries_match_page_and_warn() -> None:
    records = [
        {"StudyInstanceUID": f"1.{i}", "StudyDescription": f"slide {i}.svs"} for i in range(5)
    ]

    def run(query: dict[str, str] | list[tuple[str, str]]) -> list[str]:
        items = query if isinstance(query, list) else list(query.items())
        parsed = parse_query(items, dict(items), frozenset({"token"}))
        return [
            r["StudyInstanceUID"] for r in parsed.page([r for r in records if parsed.accepts(r)])
        ]

    assert run({}) == [f"1.{i}" for i in range(5)]
    assert run({"StudyInstanceUID": "1.1,1.3"}) == ["1.1", "1.3"]
    assert run([("StudyInstanceUID", "1.1"), ("StudyInstanceUID", "1.4")]) == ["1.1", "1.4"]
    assert run({"0020000D": "1.2\\1.0"}) == ["1.0", "1.2"]
    assert run({"StudyDescription": "slide ?.svs", "limit": "2", "offset": "1"}) == ["1.1", "1.2"]
    assert run({"StudyDescription": "*[3]*"}) == []  # only * and ? are wildcards
    assert run({"token": "secret"}) == run({})
    assert parse_query([("limit", "5000")], {"limit": "5000"}).limit == MAX_LIMIT
    assert parse_query([("Foo", "1")], {"Foo": "1"}).warning == (
        '299 tilecast "The fields Foo are not supported"'
    )
    for bad in ({"limit": "-1"}, {"offset": "x"}, {"limit": "1e3"}):
        with pytest.raises(BadRequest):
            parse_query(list(bad.items()), bad)


def test_frames_follow_tiled_full_order() -> None:
    slide = Slide("abc", "a.svs", 1, 0.0, META)
    assert slide.grid.tiles_at(4) == (12, 8)
    assert frame_tile(slide.grid, 4, 1) == dicomweb.frame_tile(slide.grid, 4, 1)
    place = frame_tile(slide.grid, 4, 14)
    assert place is not None and (place.x, place.y) == (1, 1)
    assert frame_tile(slide.grid, 4, 96) is not None
    assert frame_tile(slide.grid, 4, 97) is None and frame_tile(slide.grid, 4, 0) is None
    assert slide.frame_of(slide.series_uid(0)) == 0 and slide.frame_of("1.2") is None
    assert slide.level_of(0, slide.instance_uid(0, 3)) == 3


def test_instance_metadata_reads_back_with_pydicom() -> None:
    slide = Slide("abc", "a.svs", 1, 0.0, {**META, "mm_x": 0.00025, "mm_y": 0.0005})
    dataset = pydicom.Dataset.from_json(
        to_json(instance_metadata(slide, 0, 3, PixelFormat("YBR_FULL_422", 3), "tilecast 1"))
    )
    assert (dataset.TotalPixelMatrixColumns, dataset.TotalPixelMatrixRows) == (1500, 1000)
    assert dataset.NumberOfFrames == 6 * 4
    spacing = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == [0.001, 0.0005]  # rows (y), then columns (x)
    assert dataset.ImageType == ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    assert dataset.OpticalPathSequence[0].ICCProfile == srgb_profile()
    assert "ImageComments" not in dataset
    gray = instance_metadata(slide, 0, 4, PixelFormat("MONOCHROME2", 1), "tilecast 1")
    assert "PlanarConfiguration" not in gray and "ICCProfile" not in gray["OpticalPathSequence"][0]


def test_the_srgb_profile_is_littlecms_srgb() -> None:
    made = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    shipped = srgb_profile()
    # Bytes 24-35 are the profile's creation date.
    assert shipped[:24] + shipped[36:] == made[:24] + made[36:]


def test_frames_media_negotiation() -> None:
    jpeg_parts = f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_BASELINE}'
    for accept in (None, "*/*", jpeg_parts, "multipart/related; type=image/jpeg", "multipart/*"):
        media = dicomweb.frames_media(accept, 3)
        assert media.multipart and media.content_type == 'multipart/related; type="image/jpeg"'
        assert media.part_content_type == f"image/jpeg; transfer-syntax={JPEG_BASELINE}"
    # dicom-microscopy-viewer's ask: any transfer syntax, as octet-stream parts.
    octets = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    media = dicomweb.frames_media(octets, 2)
    assert media.multipart and media.part_type == "application/octet-stream"
    assert media.part_content_type == f"application/octet-stream; transfer-syntax={JPEG_BASELINE}"
    single = dicomweb.frames_media("image/jpeg", 1)
    assert not single.multipart and single.content_type == single.part_content_type
    refused = (
        'multipart/related; type="application/octet-stream"',  # uncompressed
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.90',
        f"{jpeg_parts}; q=0",
    )
    for accept in refused:
        with pytest.raises(dicomweb.NotAcceptable):
            dicomweb.frames_media(accept, 1)
    with pytest.raises(dicomweb.NotAcceptable):
        dicomweb.frames_media("image/jpeg", 2)


def test_frame_numbers_and_multipart_bodies() -> None:
    assert dicomweb.parse_frame_numbers("3,1, 2") == [3, 1, 2]
    for bad in ("", "0", "1,,2", "x", "1" * 11, ",".join(["1"] * 257)):
        with pytest.raises(BadRequest):
            dicomweb.parse_frame_numbers(bad)
    body, boundary = dicomweb.multipart([b"\xff\xd8a", b"\xff\xd8b"], "seed", "image/jpeg")
    assert body == dicomweb.multipart([b"\xff\xd8a", b"\xff\xd8b"], "seed", "image/jpeg")[0]
    parts = body.split(b"--" + boundary.encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n" and len(parts) == 4
    _, other = dicomweb.multipart([boundary.encode()], "seed", "image/jpeg")
    assert other != boundary and other.startswith(boundary)


def test_signed_scope_of_dicomweb_paths() -> None:
    path = "/dicomweb/studies/2.25.1/series/2.25.2/metadata"
    assert signing.scope_path(path, "abc", False) == "/item/abc/dicomweb/series/2.25.2/metadata"
    assert signing.scope_path("/dicomweb/studies/2.25.1", "abc", False) == "/item/abc/dicomweb"
    assert signing.scope_path("/dicomweb/studies", None, False) == "/dicomweb/studies"
