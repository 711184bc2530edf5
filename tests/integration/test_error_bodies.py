"""Error bodies through the running api: every error class a client can provoke is a
JSON body that names the problem, without internal paths, tracebacks or Python reprs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
REPO = Path(__file__).resolve().parents[2]
# Absolute paths (after the client's own path is taken out), reprs, traceback lines.
LEAKS = re.compile(
    r"(?<![\w.:/])/(?:tmp|home|root|usr|var|opt|srv|work|proc|etc)/"
    r"|Traceback|File \"|site-packages|\.py\b|<[\w.]+ object at 0x|0x[0-9a-f]{6,}"
    r"|\b(?:b'|\w+Error\(|\w+Exception\()"
)


def assert_clean_error(
    response: requests.Response, status: int, *, sent: str = "", internal: tuple[str, ...] = ()
) -> dict:
    """A JSON error of ``status`` whose text, once the client's own ``sent`` path is
    removed, holds no internal path (``internal``, the repository) and nothing else leaky."""
    assert response.status_code == status, response.text
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.url[
        :80
    ]
    body = response.json()
    assert set(body) <= {"error", "message", "parameter"} and body["message"], body
    text = response.text.replace(sent, "<sent>") if sent else response.text
    for path in (str(REPO), *internal):
        assert path not in text, text
    assert not LEAKS.search(text), text
    return body


def test_every_client_error_class_has_a_clean_body(
    api: ApiServer,
    sources: dict[str, str],
    source_root: Path,
    outside_file: Path,
    images: dict[str, Path],
) -> None:
    item = sources["pyramid"]
    roots = (str(source_root), str(outside_file.parent))
    checks: list[tuple[requests.Response, int, str]] = [
        (api.get(f"/item/{item}/tiles/zxy/a/0/0"), 400, ""),
        (
            api.get(f"/item/{item}/tiles/zxy/0/0/0", params={"style": '{"band": 99, "x": ['}),
            400,
            "",
        ),
        (api.get(f"/item/{item}/tiles/zxy/0/0/0", params={"encoding": "GIF"}), 400, ""),
        (api.get(f"/item/{item}/tiles/region", params={"width": 10**6}), 400, ""),
        (api.get(f"/item/{item}/tiles/zxy/30/0/0"), 404, ""),
        (api.get("/item/0123456789abcdef01234567/tiles"), 404, ""),
        (api.get("/jobs/no-such-job"), 404, ""),
        (api.get("/no/such/route"), 404, ""),
        (api.http.delete(api.url("/sources"), timeout=10), 405, ""),
        (api.get(f"/iiif/{item}/full/max/90/default.jpg"), 501, ""),
        (
            api.http.post(api.url("/sources"), data=b"{" * 100_000, headers=JSON, timeout=30),
            413,
            "",
        ),
        (api.get(f"/item/{item}/tiles", params={"x": "y" * 62_000}), 414, ""),
        (api.get(f"/item/{item}/tiles/images/{'n' * 3000}"), 414, ""),
    ]
    for path in (
        outside_file,
        source_root / "missing.tiff",
        source_root / ".." / outside_file.parent.name / outside_file.name,
    ):
        response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=30)
        checks.append((response, 400, str(path)))
    notes = source_root / "error-bodies-notes.tiff"
    notes.write_text("this is not an image\n" * 100)
    for unknown in (notes, source_root):  # no format any reader reads: a 415
        response = api.http.post(api.url("/sources"), json={"path": str(unknown)}, timeout=60)
        checks.append((response, 415, str(unknown)))
    damaged = api.register(images["damaged"])
    tile = api.get(f"/item/{damaged}/tiles/zxy/4/0/0", params={"encoding": "PNG"})
    checks.append((tile, tile.status_code if tile.status_code in (422, 502) else 422, ""))
    for response, status, sent in checks:
        assert_clean_error(response, status, sent=sent, internal=roots)
