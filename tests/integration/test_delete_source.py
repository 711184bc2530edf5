"""DELETE /sources/{id}: the tiles of a deleted source are never served again, requests in
flight while it is deleted finish cleanly, no in-flight marker stays behind, and the same
file registered again is served fresh."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

from tests.conftest import ApiServer
from tilecast.common.inflight import inflight_key

# The api trusts a generation this long (TILECAST_GENERATION_TTL's default) before it
# sees the deletion.
GENERATION_TTL = 1.0


def markers_of(state: redis.Redis, source_id: str) -> list[bytes]:
    return list(state.scan_iter(match=inflight_key(f"tc:*:{source_id}:*"), count=1000))


def test_deleting_a_source_while_viewers_ask_for_its_tiles(
    api: ApiServer, images: dict[str, Path], source_root: Path, state: redis.Redis
) -> None:
    path = source_root / "to-delete.tiff"
    shutil.copyfile(images["single"], path)
    source_id = api.register(path)
    assert api.get(f"/item/{source_id}/tiles/zxy/4/0/0").status_code == 200

    # Cold tiles of a synthesized level asked by 8 viewers at once, the source deleted
    # while they wait: each answer is the tile or a 404, never an error or a hang.
    cold = [f"/item/{source_id}/tiles/zxy/3/{x}/{y}" for y in range(4) for x in range(6)]
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda p: requests.get(api.url(p), timeout=60).status_code, cold)
        time.sleep(0.05)
        deleted = requests.delete(api.url(f"/sources/{source_id}"), timeout=30)
        statuses = list(answers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"] is True
    assert set(statuses) <= {200, 404}, statuses

    time.sleep(GENERATION_TTL + 0.2)
    gone = api.get(f"/item/{source_id}/tiles/zxy/4/0/0")  # was cached before the delete
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_source"
    assert api.get(f"/item/{source_id}/tiles").status_code == 404
    assert source_id not in {s["id"] for s in api.get("/sources").json()}
    assert requests.delete(api.url(f"/sources/{source_id}"), timeout=30).status_code == 404

    deadline = time.monotonic() + 10
    while markers_of(state, source_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert markers_of(state, source_id) == []

    # Registered again: the same id, a fresh generation, tiles rendered anew.
    assert api.register(path) == source_id
    again = api.get(f"/item/{source_id}/tiles/zxy/4/0/0")
    assert again.status_code == 200
    assert again.headers["X-Tilecast-Cache"] == "miss"
