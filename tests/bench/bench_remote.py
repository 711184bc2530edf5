"""Benchmark 8: the first tile of a Girder file of more than 1 GiB, read remotely.

Side by side, every sample cold (fresh worker and api processes, an emptied Redis, the
image's pages dropped from the OS page cache with ``posix_fadvise``):

- (a) tilecast in ``girder`` mode over HTTP, its worker reading the file by HTTP range
  requests through its block cache: from the first request for the item (so including its
  registration, which reads the file's directories) to the tile; then a second, distant
  native tile. Once with a full-resolution tile first, once with the z=0 tile first.
- (b) what a server without range reads must do: download the whole file from
  ``/file/{id}/download``, then open the local copy with tilecast's TIFF reader and read
  the same tiles in this process (no HTTP, no queue: a lower bound of that path).
- (c) tilecast with the worker reading Girder's assetstore in place
  (``TILECAST_GIRDER_PATH_MAP``), for reference.
- (d), (e) after (a), what another worker process (or host) pays to open the item and
  read a third tile: a fresh Girder reader in this process, once with nothing shared
  (as every process did before blocks and file records were shared in the cache
  Redis), once reading what (a) left in Redis.

The bytes and requests each tile cost are counted from Girder's own access log (one
line per request with its status and body size), and so are tilecast's look-ups of the
item and its file (the api's access check among them).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import requests

from tests.bench import harness, remote_setup
from tests.bench.harness import BenchError, Processes, Stack
from tests.bench.remote_setup import GirderItem, RemoteImage
from tests.bench.report import Section, median, ms
from tests.girderserver import GirderServer

SECRET = "bench-remote-secret"
BLOCK_SIZE = 256 * 1024  # tilecast's default TILECAST_GIRDER_BLOCK_SIZE, set explicitly
DOWNLOAD_CHUNK = 4 * 1024**2
TILE = 256


@dataclass(frozen=True)
class Tiles:
    """The tiles asked, as (z, x, y): native ones far apart, and the coarsest."""

    native: tuple[int, int, int]
    second: tuple[int, int, int]
    overview: tuple[int, int, int]
    other: tuple[int, int, int]  # read by "another process"


@dataclass
class Fetched:
    requests: int = 0
    bytes: int = 0
    whole_files: int = 0  # 200 answers: a full download
    lookups: int = 0  # GET item, item/files, file (not downloads)


@dataclass
class Samples:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    fetched: dict[str, list[Fetched]] = field(default_factory=dict)

    def add(self, name: str, seconds: float, fetched: Fetched | None = None) -> None:
        self.seconds.setdefault(name, []).append(seconds)
        if fetched is not None:
            self.fetched.setdefault(name, []).append(fetched)


def pick_tiles(image: RemoteImage) -> Tiles:
    levels = level_count(remote_setup.WIDTH, remote_setup.HEIGHT)
    across = -(-remote_setup.WIDTH // TILE)
    down = -(-remote_setup.HEIGHT // TILE)
    top = levels - 1
    return Tiles((top, across // 2, down // 2), (top, across - 3, 2), (0, 0, 0), (top, 3, down - 3))


def level_count(width: int, height: int) -> int:
    levels = 1
    while max(width, height) > TILE * 2 ** (levels - 1):
        levels += 1
    return levels


def drop_page_cache(path: Path) -> None:
    """Evict a file's pages (no root needed, unlike /proc/sys/vm/drop_caches)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class GirderLog:
    """What Girder served of one file since the last mark, from its access log."""

    def __init__(self, path: Path, item: GirderItem, settle: float = 0.2) -> None:
        self.path = path
        self.settle = settle
        self.pattern = re.compile(
            rf'"GET /api/v1/file/{item.file_id}/download[^"]*" (\d{{3}}) (\d+|-)'
        )
        self.lookup = re.compile(
            rf'"GET /api/v1/(?:item/{item.item_id}[/?" ]|file/{item.file_id}[?" ])'
        )
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> Fetched:
        # Girder logs a request once it is answered; give its logger a moment.
        time.sleep(self.settle)
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        self.offset += len(text.encode())
        fetched = Fetched()
        for status, size in self.pattern.findall(text):
            fetched.requests += 1
            fetched.bytes += int(size) if size != "-" else 0
            fetched.whole_files += status == "200"
        fetched.lookups = len(self.lookup.findall(text))
        return fetched


@dataclass
class Bench:
    procs: Processes
    girder: GirderServer
    item: GirderItem
    image: RemoteImage
    tiles: Tiles
    log: GirderLog
    redis: harness.RedisServer
    scratch: Path
    api_key: str  # the workers' service account: Girder's administrator

    def env(self, mode: str) -> dict[str, str]:
        extra = {
            "access_mode": "girder",
            "girder_url": self.girder.api_url,
            "girder_api_key": self.api_key,
            "girder_secret": SECRET,
            "girder_block_size": BLOCK_SIZE,
            "girder_download_dir": self.scratch / "tilecast-downloads",
        }
        if mode == "path":
            extra["girder_path_map"] = "/=/"  # Girder and the worker share this disk
        return harness.tilecast_env(self.redis.url, [self.image.path.parent], **extra)

    @contextmanager
    def cold_stack(self, mode: str) -> Iterator[Stack]:
        """Fresh worker and api processes over an emptied Redis and a cold file."""
        self.redis.client().flushall()
        drop_page_cache(self.image.path)
        env = self.env(mode)
        worker = harness.start_worker(self.procs, env, 1, name=f"worker-{mode}")
        api = None
        try:
            harness.wait_worker_ready(self.redis.client(), env, worker)
            api, port = harness.start_api(self.procs, env, workers=1, threads=4, name=f"api-{mode}")
            yield Stack(self.redis, worker, api, port, env)
        finally:
            for child in (api, worker):
                if child is not None:
                    self.procs.stop(child)

    def timed_tile(self, http: harness.Http, tile: tuple[int, int, int]) -> tuple[float, Fetched]:
        path = harness.tile_path(self.item.item_id, *tile)
        self.log.mark()
        start = time.perf_counter()
        reply = http.request("GET", path, headers={"Girder-Token": self.item.token})
        seconds = time.perf_counter() - start
        if reply.status != 200:
            raise BenchError(f"{path} -> {reply.status}: {reply.body[:300]!r}")
        return seconds, self.log.since_mark()

    def tilecast_round(self, mode: str, samples: Samples) -> None:
        with self.cold_stack(mode) as stack:
            http = stack.http()
            seconds, fetched = self.timed_tile(http, self.tiles.native)
            samples.add(f"{mode}:native", seconds, fetched)
            seconds, fetched = self.timed_tile(http, self.tiles.second)
            samples.add(f"{mode}:second", seconds, fetched)
            http.close()
            if mode == "range":
                for shared in (False, True):
                    seconds, fetched = self.other_process(stack.env, shared=shared)
                    samples.add(f"other:{'shared' if shared else 'alone'}", seconds, fetched)
        with self.cold_stack(mode) as stack:
            http = stack.http()
            seconds, fetched = self.timed_tile(http, self.tiles.overview)
            samples.add(f"{mode}:overview", seconds, fetched)
            http.close()

    def other_process(self, env: dict[str, str], *, shared: bool) -> tuple[float, Fetched]:
        """A fresh reader (another process's) opens the item and reads a third tile."""
        from tilecast.common.registry import SourceRegistry
        from tilecast.common.settings import Settings
        from tilecast.workers.girder.opening import GirderReader
        from tilecast.workers.sources import open_source

        settings = Settings.from_env(env)
        if not shared:
            settings = replace(settings, girder_block_ttl=0, girder_file_ttl=0)
        generation = SourceRegistry(self.redis.client()).generation(self.item.item_id)
        self.log.mark()
        start = time.perf_counter()
        reader = GirderReader(settings)
        try:
            opened = reader.open(self.item.item_id, generation)
            with open_source(opened.file, settings) as source:
                source.read_tile(*self.tiles.other)
            seconds = time.perf_counter() - start
        finally:
            reader.close()
        return seconds, self.log.since_mark()

    def download_round(self, samples: Samples) -> None:
        from tilecast.common.settings import Settings
        from tilecast.workers.sources import open_source

        drop_page_cache(self.image.path)
        local = self.scratch / "downloaded.tiff"
        self.log.mark()
        start = time.perf_counter()
        self.download(local)
        downloaded = time.perf_counter() - start
        fetched = self.log.since_mark()
        samples.add("download:transfer", downloaded, fetched)
        try:
            for name, tiles in (
                ("native", (self.tiles.native, self.tiles.second)),
                ("overview", (self.tiles.overview,)),
            ):
                start = time.perf_counter()
                with open_source(str(local), Settings()) as source:
                    source.read_tile(*tiles[0])
                    first = time.perf_counter() - start
                    samples.add(f"download:{name}", downloaded + first)
                    if len(tiles) > 1:
                        start = time.perf_counter()
                        source.read_tile(*tiles[1])
                        samples.add("download:second", time.perf_counter() - start)
        finally:
            local.unlink(missing_ok=True)

    def download(self, local: Path) -> None:
        url = f"{self.girder.api_url}/file/{self.item.file_id}/download"
        headers = {"Girder-Token": self.item.token}
        with requests.get(url, headers=headers, stream=True, timeout=300) as response:
            response.raise_for_status()
            with local.open("wb") as out:
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    out.write(chunk)
        if local.stat().st_size != self.image.size:
            raise BenchError(f"the download has {local.stat().st_size:,} bytes")


def run(ctx: harness.BenchContext, *, rounds: int) -> Section:
    image = remote_setup.make_image(ctx.image_dir)
    scratch = ctx.scratch / "remote"
    tiles = pick_tiles(image)
    samples = Samples()
    started = time.monotonic()
    with Processes(scratch) as procs, GirderServer(scratch / "girder") as girder:
        girder.set_setting("tilecast.secret", SECRET)
        item = remote_setup.import_into_girder(girder, image)
        redis = harness.start_redis(procs)
        log = GirderLog(girder.log, item)
        bench = Bench(procs, girder, item, image, tiles, log, redis, scratch, girder.api_key())
        for number in range(rounds):
            print(f"  remote round {number + 1}/{rounds}", flush=True)
            bench.tilecast_round("range", samples)
            bench.download_round(samples)
            bench.tilecast_round("path", samples)
        check_read_paths(samples)
    return section(image, tiles, rounds, samples, time.monotonic() - started)


def check_read_paths(samples: Samples) -> None:
    """Each mode read the way it claims: ranges only, one whole file, no HTTP at all."""
    for name, fetched in samples.fetched.items():
        mode = name.split(":")[0]
        first = not name.endswith(":second")
        if mode in ("range", "other") and any(f.whole_files for f in fetched):
            raise BenchError(f"{name}: not served by range requests: {fetched}")
        if mode == "range" and any(first and not f.requests for f in fetched):
            raise BenchError(f"{name}: not served by range requests: {fetched}")
        if mode == "path" and any(f.requests for f in fetched):
            raise BenchError(f"{name}: the direct path mode downloaded from Girder: {fetched}")
        if mode == "download" and any(f.whole_files != 1 for f in fetched):
            raise BenchError(f"{name}: not one whole download: {fetched}")


def spread(values: list[float]) -> str:
    return f"{ms(median(values))} ({ms(min(values))}-{ms(max(values))})"


def fetched_cell(fetched: list[Fetched]) -> str:
    requests_ = sorted(f.requests for f in fetched)
    sizes = sorted(f.bytes for f in fetched)
    count = (
        f"{requests_[0]}" if requests_[0] == requests_[-1] else f"{requests_[0]}-{requests_[-1]}"
    )
    size = mib(sizes[len(sizes) // 2])
    if sizes[0] != sizes[-1]:
        size += f" ({mib(sizes[0])}-{mib(sizes[-1])})"
    lookups = sorted(f.lookups for f in fetched)
    looked = f"{lookups[0]}" if lookups[0] == lookups[-1] else f"{lookups[0]}-{lookups[-1]}"
    return (
        f"{size} in {count} request{'s' if requests_[-1] != 1 else ''}"
        f" + {looked} look-up{'s' if lookups[-1] != 1 else ''}"
    )


def mib(size: int) -> str:
    return f"{size / 1024**2:,.2f} MiB" if size < 1024**3 else f"{size / 1024**3:,.2f} GiB"


def section(
    image: RemoteImage, tiles: Tiles, rounds: int, samples: Samples, duration: float
) -> Section:
    s = samples.seconds
    f = samples.fetched
    rows = [
        [
            "(a) tilecast, HTTP range reads",
            spread(s["range:native"]),
            fetched_cell(f["range:native"]),
            spread(s["range:second"]),
            fetched_cell(f["range:second"]),
            spread(s["range:overview"]),
            fetched_cell(f["range:overview"]),
        ],
        [
            "(b) whole download, then a local read",
            spread(s["download:native"]),
            fetched_cell(f["download:transfer"]),
            spread(s["download:second"]),
            "0 (local)",
            spread(s["download:overview"]),
            fetched_cell(f["download:transfer"]),
        ],
        [
            "(c) tilecast, assetstore path in place",
            spread(s["path:native"]),
            fetched_cell(f["path:native"]),
            spread(s["path:second"]),
            fetched_cell(f["path:second"]),
            spread(s["path:overview"]),
            fetched_cell(f["path:overview"]),
        ],
        [
            "(d) after (a), another worker process: open, a third tile; nothing shared",
            spread(s["other:alone"]),
            fetched_cell(f["other:alone"]),
            "",
            "",
            "",
            "",
        ],
        [
            "(e) the same, with what (a) left in the cache Redis",
            spread(s["other:shared"]),
            fetched_cell(f["other:shared"]),
            "",
            "",
            "",
            "",
        ],
    ]
    ratio = median(s["download:native"]) / median(s["range:native"])
    ratio_overview = median(s["download:overview"]) / median(s["range:overview"])
    remote_cost = median(s["range:native"]) - median(s["path:native"])
    z, x, y = tiles.native
    return Section(
        title="8. Remote source: first tile of a 1 GB Girder file, range reads vs a full download",
        measures=(
            f"A {mib(image.size)} ({image.size:,} bytes) pyramidal BigTIFF like a whole-slide "
            f"image ({remote_setup.WIDTH} x {remote_setup.HEIGHT} pixels, {z + 1} levels, "
            "256 x 256 JPEG tiles of about 30 KB) lives in a real Girder 5 (on loopback; "
            "imported in place from a filesystem assetstore). Milliseconds from the first "
            "request for the item to the tile, every sample cold: fresh tilecast worker and "
            "api processes, an emptied Redis, the file's pages dropped from the OS page cache. "
            "(a) and (c) are tilecast in `girder` access mode over HTTP (1 api, 1 worker "
            "process), the item registered by that first request. (b) downloads the whole "
            "file from Girder's `/file/{id}/download` and then opens the copy with tilecast's "
            "TIFF reader in-process (no HTTP or queue after the download: a lower bound). "
            "(d) and (e) follow each (a): a fresh Girder reader in the bench process (what "
            "another worker process or host has) opens the item at its registered generation "
            "and reads a third full-resolution tile (no HTTP or queue). Bytes and requests "
            "(of `/file/{id}/download`) are Girder's, from its access log, and so are look-ups "
            "(GET of the item, "
            f"its files or its file, the api's access check among them). {rounds} rounds; "
            "median (min-max)."
        ),
        headers=[
            "read path",
            f"first tile, full resolution z={z} ms",
            "fetched from Girder",
            "then a second full-resolution tile ms",
            "fetched",
            "first tile z=0 ms (another cold start)",
            "fetched",
        ],
        rows=rows,
        notes=[
            f"Full download / range reads, median first tile: **{ratio:.0f}x** at full "
            f"resolution, **{ratio_overview:.0f}x** for z=0; the download alone took "
            f"{spread(s['download:transfer'])} ms "
            f"({image.size / median(s['download:transfer']) / 1024**2:,.0f} MiB/s on loopback: "
            "any real network makes (b) slower, (a) much less so).",
            f"What reading by HTTP ranges adds to a cold first tile, (a) - (c) medians: "
            f"{ms(remote_cost)} ms; the rest of (a) is tilecast's own cold start of an item "
            "(access check, registration, the Celery round trip), as in (c).",
            f"Tiles: z={z} x={x} y={y} (the middle), then z={tiles.second[0]} "
            f"x={tiles.second[1]} y={tiles.second[2]} (a far corner), in (d) and (e) "
            f"z={tiles.other[0]} x={tiles.other[1]} y={tiles.other[2]}; z=0 is the file's "
            f"smallest level. Block size {BLOCK_SIZE // 1024} KiB "
            "(`TILECAST_GIRDER_BLOCK_SIZE`), a block cache per worker process, blocks and "
            "which file each registration reads shared in the cache Redis "
            "(`TILECAST_GIRDER_BLOCK_TTL`, `TILECAST_GIRDER_FILE_TTL`).",
            "What changed (before: this benchmark at 80ebb24 with 512 KiB blocks, run just "
            "before on 2026-11-30: (a) 322 ms, 4.25 MiB in 9 requests + 5 look-ups; z=0 "
            "359 ms, 3.75 MiB in 8 + 5; (c) 295 ms; every other process paid what (d) "
            "shows): a TIFF "
            "directory is read with a 512 KiB read-ahead, so its entries and the tile arrays "
            "after them cost one request, not two or three; the describe task records which "
            "file it registered under the new generation, so renders in any process skip "
            "looking the item up again; the blocks holding the directories are shared by "
            "every worker process and host through the cache Redis; blocks are 256 KiB "
            "instead of 512 (128 KiB cost one more request here, 256 KiB the same requests "
            "as 512 with a quarter fewer bytes). Times on this shared machine vary by "
            "+-30% between runs: compare requests and bytes first.",
            f"Girder {metadata.version('girder')} on secantusdb {metadata.version('secantusdb')} "
            "(the MongoDB stand-in of the test suite), both on this machine; Girder "
            "authenticates and looks up the file for every range request.",
            image_note(image),
            f"This part took {duration:.0f} s.",
        ],
    )


def image_note(image: RemoteImage) -> str:
    note = f"The image is cached in `{image.path.parent.name}/` of the bench's image folder"
    if image.generated_in is None:
        return note + " (generated by an earlier run; about 35 s on 2 cores)."
    return note + f"; this run generated it in {image.generated_in:.0f} s."
