"""The cache Redis as a Redis Cluster: a worker and an api whose TILECAST_CACHE_URL is a
real three-primary cluster (tests/rediscluster.py) and whose state Redis is the suite's
redis-server (a database of its own). Tiles render and then hit, thumbnails, regions and
styled tiles (band statistics in the cache) work, an image's keys spread over the nodes,
/metrics and /readyz read every primary, the keeper trims a primary past its own
high-water mark, and registering and deleting a source behave as on one server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REPO, ApiServer, Child, launch_api, launch_worker
from tests.integration.jobsupport import missing_keys, scope_keys, wait_until_ended
from tests.rediscluster import RedisClusterServers
from tilecast.common import counters
from tilecast.common.jobstore import FINISHED
from tilecast.common.redisconn import LazyCluster, connect, connect_cache, primaries
from tilecast.workers.keeper import memory

STATE_DB = 15  # no other test's database
GENERATION_TTL = 1.0  # TILECAST_GENERATION_TTL's default
KEEPER_INTERVAL = 0.5


@pytest.fixture(scope="module")
def cluster(redis_cluster: RedisClusterServers) -> Iterator[LazyCluster]:
    client = connect_cache(redis_cluster.url)
    assert isinstance(client, LazyCluster)
    for node in primaries(client):
        node.flushall()
        node.config_set("maxmemory", "256mb")
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster_state(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(f"{redis_url.rsplit('/', 1)[0]}/{STATE_DB}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def cluster_env(
    redis_cluster: RedisClusterServers, redis_url: str, tilecast_env: dict[str, str]
) -> dict[str, str]:
    return {
        **tilecast_env,
        "TILECAST_CACHE_URL": redis_cluster.url,
        "TILECAST_STATE_URL": f"{redis_url.rsplit('/', 1)[0]}/{STATE_DB}",
        "TILECAST_KEEPER_INTERVAL": str(KEEPER_INTERVAL),
    }


@pytest.fixture(scope="module")
def cluster_api(
    cluster: LazyCluster, cluster_state: redis.Redis, cluster_env: dict[str, str], logs_dir: Path
) -> Iterator[ApiServer]:
    env = cluster_env
    worker: Child = launch_worker(env, logs_dir, name="worker-cluster")
    try:
        server = launch_api(env, logs_dir, name="api-cluster")
    except BaseException:
        worker.stop()
        raise
    yield server
    server.http.close()
    server.child.stop()
    worker.stop()


def keys_by_node(cluster: LazyCluster, pattern: str) -> list[list[bytes]]:
    return [list(node.scan_iter(match=pattern, count=1000)) for node in primaries(cluster)]


def get_twice(api: ApiServer, path: str, **params: str) -> tuple[requests.Response, ...]:
    first = api.get(path, params=params)
    assert first.status_code == 200, first.text
    second = api.get(path, params=params)
    assert second.status_code == 200, second.text
    assert second.content == first.content
    return first, second


def test_tiles_render_then_hit_and_spread_over_the_nodes(
    cluster_api: ApiServer, cluster: LazyCluster, images: dict[str, Path]
) -> None:
    source = cluster_api.register(images["single"])  # no pyramid: levels are synthesized
    paths = [f"/item/{source}/tiles/zxy/3/{x}/{y}" for y in range(4) for x in range(6)]
    for path in paths:
        first, second = get_twice(cluster_api, path)
        assert first.headers["X-Tilecast-Cache"] == "miss"
        assert second.headers["X-Tilecast-Cache"] == "hit"
        assert first.headers["Content-Type"] == "image/jpeg"
    tiles = keys_by_node(cluster, f"tc:tile:{source}:*")
    assert sum(map(len, tiles)) == len(paths)
    assert all(tiles), "every primary holds some of the image's tiles"
    # Synthesized levels were built from raw tiles read back in batches (MGET per slot).
    raws = keys_by_node(cluster, f"tc:raw:{source}:*")
    assert sum(map(len, raws)) > 0


def test_thumbnails_regions_and_styles(
    cluster_api: ApiServer, cluster: LazyCluster, images: dict[str, Path]
) -> None:
    source = cluster_api.register(images["pyramid"])
    first, second = get_twice(
        cluster_api, f"/item/{source}/tiles/thumbnail", width="200", encoding="PNG"
    )
    assert first.headers["X-Tilecast-Cache"] == "miss"
    assert second.headers["X-Tilecast-Cache"] == "hit"
    assert first.content.startswith(b"\x89PNG")
    region, _again = get_twice(
        cluster_api,
        f"/item/{source}/tiles/region",
        left="100",
        top="100",
        right="900",
        bottom="600",
        width="200",
        encoding="PNG",
    )
    assert region.content.startswith(b"\x89PNG")
    style = json.dumps({"band": 1, "min": "auto", "max": "auto", "palette": "viridis"})
    styled, hit = get_twice(cluster_api, f"/item/{source}/tiles/zxy/2/1/1", style=style)
    assert hit.headers["X-Tilecast-Cache"] == "hit"
    plain = cluster_api.get(f"/item/{source}/tiles/zxy/2/1/1")
    assert plain.status_code == 200 and plain.content != styled.content
    stats_keys = [k for node in keys_by_node(cluster, f"tc:bandstats:{source}:*") for k in node]
    assert len(stats_keys) == 1
    assert set(json.loads(cluster.get(stats_keys[0]))) >= {"min", "max"}


def test_metrics_and_readiness_read_every_primary(
    cluster_api: ApiServer, cluster: LazyCluster, images: dict[str, Path]
) -> None:
    source = cluster_api.register(images["pyramid"])
    assert cluster_api.get(f"/item/{source}/tiles/zxy/1/0/0").status_code == 200
    ready = cluster_api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["cache"]["ok"] is True
    text = cluster_api.get("/metrics").text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("tilecast_tile_cache_") and " " in line
    }
    nodes = primaries(cluster)
    assert values["tilecast_tile_cache_max_bytes"] == sum(memory(n)[1] for n in nodes)
    # Keys change only by this module's requests: none run while it reads.
    assert values["tilecast_tile_cache_keys"] == sum(int(n.dbsize()) for n in nodes)


def test_deleting_and_registering_a_source_again(
    cluster_api: ApiServer, images: dict[str, Path], source_root: Path
) -> None:
    path = source_root / "cluster-delete.tiff"
    path.write_bytes(images["pyramid"].read_bytes())
    source = cluster_api.register(path)
    tile = f"/item/{source}/tiles/zxy/2/0/0"
    get_twice(cluster_api, tile)
    deleted = requests.delete(cluster_api.url(f"/sources/{source}"), timeout=30)
    assert deleted.status_code == 200, deleted.text
    time.sleep(GENERATION_TTL + 0.2)
    gone = cluster_api.get(tile)
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_source"
    assert cluster_api.register(path) == source
    again = cluster_api.get(tile)
    assert again.status_code == 200 and again.headers["X-Tilecast-Cache"] == "miss"
    assert cluster_api.get(tile).headers["X-Tilecast-Cache"] == "hit"


def test_the_keeper_trims_the_primary_past_its_high_water_mark(
    cluster_api: ApiServer,
    cluster: LazyCluster,
    cluster_state: redis.Redis,
    images: dict[str, Path],
) -> None:
    source = cluster_api.register(images["lzw"])
    for y in range(3):
        for x in range(4):
            assert cluster_api.get(f"/item/{source}/tiles/zxy/2/{x}/{y}").status_code == 200
    pattern = f"tc:tile:{source}:*"
    by_node = keys_by_node(cluster, pattern)
    nodes = primaries(cluster)
    full = max(range(len(nodes)), key=lambda i: len(by_node[i]))
    assert by_node[full]
    runs_before = int(cluster_state.hget(counters.STATS_KEY, counters.KEEPER_RUNS) or 0)
    # Past the keeper's high-water mark (0.9) and below Redis's own eviction (1.0).
    used = memory(nodes[full])[0]
    nodes[full].config_set("maxmemory", str(int(used / 0.95)))
    try:
        deadline = time.monotonic() + 20
        while keys_by_node(cluster, pattern)[full] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        nodes[full].config_set("maxmemory", "256mb")
    after = keys_by_node(cluster, pattern)
    assert after[full] == []
    assert int(cluster_state.hget(counters.STATS_KEY, counters.KEEPER_RUNS) or 0) > runs_before
    for i, keys in enumerate(by_node):
        if i != full:
            assert sorted(after[i]) == sorted(keys), "a node below its mark keeps its keys"


def test_a_precache_job_fills_the_cluster_and_stats_read_it(
    cluster_api: ApiServer,
    cluster: LazyCluster,
    cluster_state: redis.Redis,
    images: dict[str, Path],
    cluster_env: dict[str, str],
) -> None:
    source = cluster_api.register(images["deflate"])
    body = {"levels": "0-2", "jpegQuality": 73, "thumbnail": True}
    response = cluster_api.http.post(
        cluster_api.url(f"/item/{source}/tiles/precache"), json=body, timeout=30
    )
    assert response.status_code == 201, response.text
    ended = wait_until_ended(cluster_api, response.json()["id"])
    assert (ended["state"], ended["failed"]) == (FINISHED, 0)
    assert ended["rendered"] == ended["total"] > 1
    # Every tile of the job: cached (EXISTS and SET pipelines split by node), so a hit.
    assert missing_keys(cluster, scope_keys(cluster_state, ended["id"])) == []
    hit = cluster_api.get(f"/item/{source}/tiles/zxy/2/1/1", params={"jpegQuality": "73"})
    assert hit.headers["X-Tilecast-Cache"] == "hit"
    # A second job finds every tile cached and renders nothing.
    again = cluster_api.http.post(
        cluster_api.url(f"/item/{source}/tiles/precache"), json=body, timeout=30
    )
    done = wait_until_ended(cluster_api, again.json()["id"])
    assert (done["skipped"], done["rendered"]) == (ended["total"], 0)

    stats_run = subprocess.run(
        [sys.executable, "-m", "tilecast", "stats", "--json"],
        env=cluster_env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert stats_run.returncode == 0, stats_run.stderr.decode()
    numbers = json.loads(stats_run.stdout)["tile_cache"]
    assert numbers["keys"] == sum(int(node.dbsize()) for node in primaries(cluster))
