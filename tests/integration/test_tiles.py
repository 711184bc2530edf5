"""Tiles, thumbnails and metadata over HTTP, rendered by real Celery workers."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ApiServer
from tests.images import HEIGHT, SMALL_HEIGHT, SMALL_WIDTH, WIDTH

pytestmark = pytest.mark.integration

METADATA_FIELDS = {
    "levels", "sizeX", "sizeY", "tileWidth", "tileHeight",
    "magnification", "mm_x", "mm_y", "dtype", "bandCount",
}  # fmt: skip


def levels_of(width: int, height: int, tile: int = 256) -> int:
    return max(1, math.ceil(math.log2(max(width / tile, height / tile))) + 1)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_metadata(api: ApiServer, sources: dict[str, str]) -> None:
    for name in ("pyramid", "single"):
        response = api.get(f"/item/{sources[name]}/tiles")
        assert response.status_code == 200
        meta = response.json()
        assert set(meta) >= METADATA_FIELDS
        assert (meta["sizeX"], meta["sizeY"]) == (WIDTH, HEIGHT)
        assert (meta["tileWidth"], meta["tileHeight"]) == (256, 256)
        assert meta["levels"] == levels_of(WIDTH, HEIGHT) == 5
        assert meta["dtype"] == "uint8" and meta["bandCount"] == 3
        assert meta["mm_x"] == pytest.approx(0.00025)


def test_miss_then_hit_with_http_caching(api: ApiServer, sources: dict[str, str]) -> None:
    path = f"/item/{sources['pyramid']}/tiles/zxy/3/2/1"
    miss = api.get(path)
    assert miss.status_code == 200, miss.text
    assert miss.headers["Content-Type"] == "image/jpeg"
    assert miss.content[:2] == b"\xff\xd8"
    assert miss.headers["Cache-Control"] == "public, max-age=86400"
    etag = miss.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    hit = api.get(path)
    assert hit.status_code == 200 and hit.content == miss.content
    assert hit.headers["ETag"] == etag
    not_modified = api.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    assert decode(hit.content).size == (256, 256)


@pytest.mark.parametrize("name", ["pyramid", "single"])
def test_every_level(api: ApiServer, sources: dict[str, str], name: str) -> None:
    """Native levels of the pyramid; synthesized levels of the single-level file."""
    levels = levels_of(WIDTH, HEIGHT)
    for z in range(levels):
        scale = 2 ** (levels - 1 - z)
        last_x = math.ceil(WIDTH / scale / 256) - 1
        last_y = math.ceil(HEIGHT / scale / 256) - 1
        for x, y in {(0, 0), (last_x, last_y)}:
            response = api.get(f"/item/{sources[name]}/tiles/zxy/{z}/{x}/{y}?encoding=PNG")
            assert response.status_code == 200, (z, x, y, response.text)
            assert response.headers["Content-Type"] == "image/png"
            # Edge tiles, and the one tile of the smallest levels, are whole tiles, as
            # large_image's: beyond the content lies the file's (or synthesis') padding.
            assert decode(response.content).size == (256, 256), (z, x, y)


def test_synthesized_level_looks_like_the_native_one(
    api: ApiServer, sources: dict[str, str]
) -> None:
    native = decode(api.get(f"/item/{sources['pyramid']}/tiles/zxy/1/0/0?encoding=PNG").content)
    made = decode(api.get(f"/item/{sources['single']}/tiles/zxy/1/0/0?encoding=PNG").content)
    assert native.size == made.size
    a, b = native.convert("RGB").tobytes(), made.convert("RGB").tobytes()
    mse = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a)
    psnr = 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)
    assert psnr > 25, psnr


@pytest.mark.parametrize(
    ("encoding", "content_type", "magic"),
    [
        ("JPEG", "image/jpeg", b"\xff\xd8"),
        ("PNG", "image/png", b"\x89PNG"),
        ("WEBP", "image/webp", b"RIFF"),
        ("TIFF", "image/tiff", b"II*\x00"),
    ],
)
def test_encodings(
    api: ApiServer, sources: dict[str, str], encoding: str, content_type: str, magic: bytes
) -> None:
    response = api.get(f"/item/{sources['pyramid']}/tiles/zxy/4/1/1?encoding={encoding}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == content_type
    assert response.content.startswith(magic) or (encoding == "TIFF" and b"MM" in magic)


def test_style(api: ApiServer, sources: dict[str, str]) -> None:
    base = f"/item/{sources['pyramid']}/tiles/zxy/4/2/2?encoding=PNG"
    plain = decode(api.get(base).content)
    styled = api.get(
        base, params={"style": '{"band": 1, "min": 50, "max": 200, "palette": "#f00"}'}
    )
    assert styled.status_code == 200, styled.text
    assert decode(styled.content).tobytes() != plain.tobytes()


def test_thumbnail(api: ApiServer, sources: dict[str, str]) -> None:
    default = api.get(f"/item/{sources['pyramid']}/tiles/thumbnail")
    assert default.status_code == 200, default.text
    assert default.headers["Content-Type"] == "image/jpeg"
    assert max(decode(default.content).size) == 256
    sized = api.get(f"/item/{sources['single']}/tiles/thumbnail?width=120&encoding=PNG")
    assert sized.status_code == 200, sized.text
    assert decode(sized.content).size == (120, 80)
    etag = sized.headers["ETag"]
    again = api.get(
        f"/item/{sources['single']}/tiles/thumbnail?width=120&encoding=PNG",
        headers={"If-None-Match": etag},
    )
    assert again.status_code == 304


@pytest.mark.parametrize("name", ["lzw", "deflate", "zstd", "striped", "png", "jpeg"])
def test_other_formats(api: ApiServer, sources: dict[str, str], name: str) -> None:
    meta = api.get(f"/item/{sources[name]}/tiles").json()
    assert (meta["sizeX"], meta["sizeY"]) == (SMALL_WIDTH, SMALL_HEIGHT)
    top = meta["levels"] - 1
    for z in (0, top):
        response = api.get(f"/item/{sources[name]}/tiles/zxy/{z}/0/0?encoding=PNG")
        assert response.status_code == 200, (name, z, response.text)
        assert decode(response.content).size[0] > 0


def test_sources_listing_and_reregistration(
    api: ApiServer, sources: dict[str, str], images: dict[str, Path]
) -> None:
    listed = api.get("/sources").json()
    assert set(sources.values()) <= {entry["id"] for entry in listed}
    again = api.http.post(api.url("/sources"), json={"path": str(images["pyramid"])}, timeout=30)
    assert again.status_code == 200 and again.json()["id"] == sources["pyramid"]


def test_probes(api: ApiServer) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200
