"""Every bad input of issue 2: a JSON error naming the problem, never a 500 or a hang."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) <= {"error", "message", "parameter"} and body["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"] == code
    return body


@pytest.mark.parametrize(
    ("zxy", "parameter"),
    [("5/0/0", "z"), ("4/12/0", "x"), ("4/0/8", "y"), ("0/1/0", "x"), ("-1/0/0", "z"),
     ("2/-3/0", "x"), ("99999999999/0/0", "z")],
)  # fmt: skip
def test_out_of_range(api: ApiServer, sources: dict[str, str], zxy: str, parameter: str) -> None:
    body = assert_error(
        api.get(f"/item/{sources['pyramid']}/tiles/zxy/{zxy}"), 404, "tile_out_of_range"
    )
    assert body["parameter"] == parameter


def test_non_integer_coordinates(api: ApiServer, sources: dict[str, str]) -> None:
    for zxy, parameter in [("a/0/0", "z"), ("1/1.5/0", "x"), ("1/0/0x1", "y")]:
        body = assert_error(api.get(f"/item/{sources['pyramid']}/tiles/zxy/{zxy}"), 400)
        assert body["parameter"] == parameter


def test_unknown_item(api: ApiServer) -> None:
    for path in ["tiles", "tiles/zxy/0/0/0", "tiles/thumbnail"]:
        assert_error(api.get(f"/item/{'f' * 24}/{path}"), 404, "unknown_source")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"encoding": "GIF"}, "encoding"),
        ({"jpegQuality": "0"}, "jpegQuality"),
        ({"jpegQuality": "abc"}, "jpegQuality"),
        ({"jpegSubsampling": "7"}, "jpegSubsampling"),
        ({"style": "{bad json"}, "style"),
        ({"style": '{"palette": "nonsense"}'}, "style"),
        ({"style": '{"function": {"name": "os.system"}}'}, "style"),
        ({"style": json.dumps({"palette": ["#000000"] * 2000})}, "style"),  # > 16 KiB
        ({"frame": "-1"}, "frame"),
    ],
)
def test_bad_parameters(
    api: ApiServer, sources: dict[str, str], query: dict[str, str], parameter: str
) -> None:
    body = assert_error(api.get(f"/item/{sources['pyramid']}/tiles/zxy/0/0/0", params=query), 400)
    assert body["parameter"] == parameter


def test_frame_out_of_range(api: ApiServer, sources: dict[str, str]) -> None:
    # A frame the image lacks is a bad parameter (400), unlike a tile outside it (404).
    body = assert_error(api.get(f"/item/{sources['pyramid']}/tiles/zxy/0/0/0?frame=3"), 400)
    assert body["parameter"] == "frame"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("width=1", "width"), ("height=100000", "height"), ("width=x", "width")],
)
def test_bad_thumbnail_sizes(
    api: ApiServer, sources: dict[str, str], query: str, parameter: str
) -> None:
    body = assert_error(api.get(f"/item/{sources['pyramid']}/tiles/thumbnail?{query}"), 400)
    assert body["parameter"] == parameter


def test_registration_refusals(
    api: ApiServer, outside_file: Path, source_root: Path, images: dict[str, Path]
) -> None:
    (source_root / "escape.png").unlink(missing_ok=True)
    (source_root / "escape.png").symlink_to(outside_file)
    for path in [
        str(outside_file),
        str(source_root / ".." / outside_file.parent.name / outside_file.name),
        str(source_root / "escape.png"),
        str(source_root / "missing.tiff"),
        "",
    ]:
        response = api.http.post(api.url("/sources"), json={"path": path}, timeout=30)
        assert assert_error(response, 400)["parameter"] == "path", path
    not_json = api.http.post(api.url("/sources"), data="path", timeout=30)
    assert_error(not_json, 400)
    # A directory may be one image (OME-Zarr, a DICOM series); the source root is none.
    folder = api.http.post(api.url("/sources"), json={"path": str(source_root)}, timeout=60)
    assert "a directory of" in assert_error(folder, 415, "unsupported_format")["message"]


def test_a_file_of_no_known_format_is_415_naming_what_it_is(
    api: ApiServer, source_root: Path
) -> None:
    path = source_root / "notes.tiff"
    path.write_text("this is not an image\n" * 100)
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=60)
    message = assert_error(response, 415, "unsupported_format")["message"]
    assert "the file is text" in message and str(source_root) not in message


def test_truncated_file_is_refused(api: ApiServer, images: dict[str, Path]) -> None:
    response = api.http.post(api.url("/sources"), json={"path": str(images["corrupt"])}, timeout=60)
    assert_error(response, 422, "unsupported_image")


def test_damaged_tiles_error_while_others_keep_serving(
    api: ApiServer, images: dict[str, Path], sources: dict[str, str]
) -> None:
    damaged = api.register(images["damaged"])  # its directory is intact: it registers
    for z, x, y in [(4, 0, 0), (4, 11, 7), (2, 1, 1)]:  # native, then synthesized from it
        tile = api.get(f"/item/{damaged}/tiles/zxy/{z}/{x}/{y}?encoding=PNG")
        body = assert_error(tile, tile.status_code)
        assert tile.status_code in (422, 502), body
    thumbnail = api.get(f"/item/{damaged}/tiles/thumbnail?encoding=PNG")
    assert thumbnail.status_code in (422, 502)
    # The workers keep serving other sources, cold tiles included.
    other = api.get(f"/item/{sources['pyramid']}/tiles/zxy/4/7/7?encoding=PNG")
    assert other.status_code == 200 and other.headers["Content-Type"] == "image/png"


def test_unknown_routes_and_methods(api: ApiServer) -> None:
    assert_error(api.get("/no/such/thing"), 404, "not_found")
    assert_error(api.http.delete(api.url("/sources"), timeout=10), 405)
