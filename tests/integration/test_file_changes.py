"""Files that change under a registration (issue 14): replaced by rename, rewritten in
place, truncated or deleted after their tiles were served. What follows is metadata and
tiles of the new file only under a new ``X-Tilecast-Generation`` (pixels compared with
the new file's), or a clean 410 naming the problem; never a tile of one file under the
other's generation, never a 500, and the worker keeps serving other sources.

The session's worker checks files at its default ``TILECAST_FILE_CHECK_INTERVAL`` (2 s)
and the api trusts a generation for ``TILECAST_GENERATION_TTL`` (1 s): a change is seen
within a few seconds, which the deadlines below leave room for.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pyvips
import requests
from PIL import Image

from tests.conftest import ApiServer, Child
from tilecast.sample import sample_image, write_tiff

TILE = 256
GENERATION_TTL = 1.0
# Detection takes a file check (2 s), a describe, and the api's generation TTL (1 s).
NOTICE_DEADLINE = 30.0


@dataclass
class Picture:
    """A generated image written as a lossless tiled pyramid, and its pixels."""

    pixels: np.ndarray  # (h, w, 3) uint8

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]

    def tile(self, x: int, y: int) -> np.ndarray:
        return self.pixels[y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE]


def picture(width: int, height: int, variant: int) -> tuple[pyvips.Image, Picture]:
    image = sample_image(width, height)
    if variant == 1:
        image = image.invert()
    elif variant == 2:
        image = image.flip("horizontal")
    image = image.cast("uchar").copy_memory()
    pixels = np.ndarray(
        buffer=image.write_to_memory(), dtype=np.uint8, shape=(height, width, image.bands)
    )
    return image, Picture(pixels.copy())


def write(image: pyvips.Image, path: Path) -> None:
    write_tiff(image, path, pyramid=True, compression="deflate")


# Three pictures with different sizes and pixels: a tile of one never equals another's.
OLD = (1300, 900, 0)
NEW = (1000, 700, 1)
OTHER = (1100, 800, 2)


def full_level(size: tuple[int, int]) -> int:
    tiles = max(-(-size[0] // TILE), -(-size[1] // TILE))
    return (tiles - 1).bit_length()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def fresh_path(root: Path, name: str) -> Path:
    return root / f"{name}-{uuid.uuid4().hex[:8]}.tiff"


def generation(response: requests.Response) -> int:
    return int(response.headers["X-Tilecast-Generation"])


def ask(api: ApiServer, path: str) -> requests.Response:
    """GET ``path``, asking again while a worker reports the file changed under the
    request (503 source_changed: the new generation is registered; ask again)."""
    for _ in range(5):
        response = api.get(path)
        if response.status_code != 503:
            return response
        assert response.json()["error"] == "source_changed", response.text
        assert response.headers["Retry-After"] == "1"
    raise AssertionError(f"{path} kept answering 503")


def check_tile(
    api: ApiServer, source: str, x: int, y: int, by_generation: dict[int, Picture]
) -> int:
    """A full-resolution tile: its pixels are those of the picture its generation header
    names (never the other file's). Answers the generation."""
    pictures = list(by_generation.values())
    z = full_level(pictures[-1].size)
    response = ask(api, f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=PNG")
    assert response.status_code == 200, response.text
    gen = generation(response)
    assert gen in by_generation, (gen, list(by_generation))
    expected = by_generation[gen].tile(x, y)
    got = decode(response.content)[: expected.shape[0], : expected.shape[1]]
    assert np.array_equal(got, expected), f"tile {x},{y} of generation {gen} mixes files"
    return gen


def check_metadata(api: ApiServer, source: str, by_generation: dict[int, Picture]) -> int:
    """The metadata answer: the size of the picture its generation header names."""
    response = ask(api, f"/item/{source}/tiles")
    assert response.status_code == 200, response.text
    gen = generation(response)
    assert gen in by_generation, (gen, list(by_generation))
    meta = response.json()
    assert (meta["sizeX"], meta["sizeY"]) == by_generation[gen].size
    return gen


def until(what: str, predicate: Callable[[], bool], deadline: float = NOTICE_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def serve_old(api: ApiServer, source: str, old: Picture) -> int:
    """Serve metadata and every full-resolution tile of the old file (the worker now
    has it open, every tile is cached): the generation they were served under."""
    meta = api.get(f"/item/{source}/tiles")
    assert meta.status_code == 200
    first = generation(meta)
    columns, rows = -(-old.size[0] // TILE), -(-old.size[1] // TILE)
    for y in range(rows):
        for x in range(columns):
            assert check_tile(api, source, x, y, {first: old}) == first
    return first


def switch_to_new(api: ApiServer, source: str, first: int, old: Picture, new: Picture) -> int:
    """After the file changed: metadata and tiles always agree with their generation
    header while the change is being noticed, then only the new file is served."""
    seen: dict[int, Picture] = {first: old}

    def moved_on() -> bool:
        gen = check_metadata(api, source, {**seen, **{g: new for g in range(first + 1, first + 9)}})
        return gen > first

    until("a new generation", moved_on)
    time.sleep(GENERATION_TTL + 0.2)  # every api process's memo has moved on too
    gen = check_metadata(api, source, {g: new for g in range(first + 1, first + 9)})
    columns, rows = -(-new.size[0] // TILE), -(-new.size[1] // TILE)
    for y in range(rows):
        for x in range(columns):
            assert check_tile(api, source, x, y, {gen: new}) == gen
    # Coarser levels are synthesized from the new file's tiles only: the whole image at
    # z=0 is close to the new picture shrunk, far from the old one.
    overview = ask(api, f"/item/{source}/tiles/zxy/0/0/0?encoding=PNG")
    assert overview.status_code == 200 and generation(overview) == gen
    assert_overview_of(decode(overview.content), new, old)
    # An URL naming the old generation promised the old file's bytes: 404, not new ones.
    stale = api.get(f"/item/{source}/tiles/zxy/0/0/0?gen={first}")
    assert stale.status_code == 404, stale.text
    assert stale.json()["error"] == "generation_gone"
    current = api.get(f"/item/{source}/tiles/zxy/0/0/0?gen={gen}")
    assert current.status_code == 200 and "immutable" in current.headers["Cache-Control"]
    return gen


def assert_overview_of(tile: np.ndarray, new: Picture, old: Picture) -> None:
    def shrunk(p: Picture) -> np.ndarray:
        scale = 2 ** full_level(p.size)
        w, h = -(-p.size[0] // scale), -(-p.size[1] // scale)
        small = Image.fromarray(p.pixels).resize((w, h), Image.Resampling.BOX)
        return np.asarray(small).astype(float)

    expected = shrunk(new)
    got = tile[: expected.shape[0], : expected.shape[1]].astype(float)
    assert np.abs(got - expected).mean() < 6
    other = shrunk(old)
    h, w = min(other.shape[0], got.shape[0]), min(other.shape[1], got.shape[1])
    assert np.abs(got[:h, :w] - other[:h, :w]).mean() > 30


def assert_serving_others(api: ApiServer, worker: Child, source_root: Path) -> None:
    """The worker is alive and renders a cold tile of another source."""
    assert worker.proc.poll() is None
    image, other = picture(*OTHER)
    path = fresh_path(source_root, "bystander")
    write(image, path)
    source = api.register(path)
    response = api.get(f"/item/{source}/tiles/zxy/{full_level(other.size)}/1/1?encoding=PNG")
    assert response.status_code == 200
    assert response.headers["X-Tilecast-Cache"] == "miss"
    assert np.array_equal(decode(response.content), other.tile(1, 1))


def test_a_file_replaced_by_rename_serves_the_new_file_only(
    api: ApiServer, worker: Child, source_root: Path
) -> None:
    old_image, old = picture(*OLD)
    new_image, new = picture(*NEW)
    path = fresh_path(source_root, "renamed")
    write(old_image, path)
    source = api.register(path)
    first = serve_old(api, source, old)

    staged = path.with_suffix(".new.tiff")
    write(new_image, staged)
    os.replace(staged, path)  # what every careful writer does
    switch_to_new(api, source, first, old, new)
    assert_serving_others(api, worker, source_root)


def test_a_file_rewritten_in_place_serves_the_new_file_only(
    api: ApiServer, worker: Child, source_root: Path
) -> None:
    old_image, old = picture(*OLD)
    new_image, new = picture(*NEW)
    path = fresh_path(source_root, "inplace")
    write(old_image, path)
    inode = path.stat().st_ino
    source = api.register(path)
    first = serve_old(api, source, old)

    staged = source_root / f"staged-{uuid.uuid4().hex[:8]}.tiff"
    write(new_image, staged)
    with open(path, "r+b") as out:  # the same inode, other bytes
        out.truncate(0)
        out.write(staged.read_bytes())
    staged.unlink()
    assert path.stat().st_ino == inode
    switch_to_new(api, source, first, old, new)
    assert_serving_others(api, worker, source_root)


def gone_answers(api: ApiServer, source: str, first: int, reason: str) -> None:
    """Once noticed, every answer about the source is a 410 naming the problem: the
    metadata, the tiles served before (cached under the old generation) and cold ones."""

    def is_gone() -> bool:
        response = api.get(f"/item/{source}/tiles")
        if response.status_code == 200:
            assert generation(response) == first  # the old file, not yet noticed
            return False
        return response.status_code == 410

    until("a 410", is_gone)
    time.sleep(GENERATION_TTL + 0.2)
    for path in (
        f"/item/{source}/tiles",
        f"/item/{source}/tiles/zxy/0/0/0",  # was cached
        f"/item/{source}/tiles/zxy/2/1/1?encoding=PNG",  # was cached
        f"/item/{source}/tiles/zxy/1/1/1?encoding=WEBP",  # never rendered
        f"/item/{source}/tiles/thumbnail",
    ):
        response = ask(api, path)
        assert response.status_code == 410, (path, response.status_code, response.text)
        body = response.json()
        assert body["error"] == "source_gone" and reason in body["message"], body
    stale = api.get(f"/item/{source}/tiles/zxy/0/0/0?gen={first}")
    assert stale.status_code in (404, 410), stale.text


@pytest.mark.parametrize("fraction", [0.5, 0.02])
def test_a_file_truncated_while_open_answers_410(
    api: ApiServer, worker: Child, source_root: Path, fraction: float
) -> None:
    old_image, old = picture(*OLD)
    path = fresh_path(source_root, "truncated")
    write(old_image, path)
    source = api.register(path)
    first = serve_old(api, source, old)
    assert api.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200
    assert api.get(f"/item/{source}/tiles/thumbnail").status_code == 200

    os.truncate(path, int(path.stat().st_size * fraction))
    gone_answers(api, source, first, "can no longer be read")
    assert_serving_others(api, worker, source_root)


def test_a_file_deleted_while_open_answers_410_until_it_is_back(
    api: ApiServer, worker: Child, source_root: Path
) -> None:
    old_image, old = picture(*OLD)
    new_image, new = picture(*NEW)
    path = fresh_path(source_root, "deleted")
    write(old_image, path)
    source = api.register(path)
    first = serve_old(api, source, old)

    path.unlink()
    gone_answers(api, source, first, "deleted")
    assert_serving_others(api, worker, source_root)
    assert api.http.post(api.url("/sources"), json={"path": str(path)}).status_code == 400

    # Back, with other content: registering the path again serves the new file.
    write(new_image, path)
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=90)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == source and response.json()["refreshed"] is True
    gen = check_metadata(api, source, {response.json()["generation"]: new})
    assert check_tile(api, source, 2, 1, {gen: new}) == gen


def test_registering_a_changed_path_again_refreshes_it_at_once(
    api: ApiServer, source_root: Path
) -> None:
    old_image, old = picture(*OLD)
    new_image, new = picture(*NEW)
    path = fresh_path(source_root, "reregistered")
    write(old_image, path)
    source = api.register(path)
    again = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=90)
    assert again.status_code == 200 and "refreshed" not in again.json()  # unchanged file
    first = check_metadata(api, source, {g: old for g in range(1, 1000)})

    staged = path.with_suffix(".new.tiff")
    write(new_image, staged)
    os.replace(staged, path)
    # No waiting for the file check: the registration itself notices the change.
    response = api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=90)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == source and body["refreshed"] is True and body["generation"] > first
    time.sleep(GENERATION_TTL + 0.2)
    gen = check_metadata(api, source, {body["generation"]: new})
    assert check_tile(api, source, 3, 2, {gen: new}) == gen
