"""Benchmark 11: URL sources -- a TIFF of more than 1 GiB read by range from S3 and HTTP,
beside downloading it whole first; and the throughput of 64-tile viewports read from a
local file, from S3, from HTTP and from a DICOMweb server (the same pyramid as a DICOM
WSI series in Orthanc).

The servers are the test suite's (tests/remoteservers.py, tests/orthancserver.py):
moto's S3 in server mode, the Range HTTP server, and Orthanc with its DICOMweb plugin
behind the tests' counting proxy (tests/bench/dicomweb_setup.py), all on loopback with a
per-request latency of ``LATENCY`` added by the server or the proxy (what a real
network's round trip costs; loopback has none). moto itself
reads and copies the whole object for every GET, which for a 1 GB object costs more than
any real store's range read; its ranged GETs of the object are therefore answered from
moto's own storage of it, reading the range only (``S3Server(direct_ranges=True)``),
while HEADs, whole GETs and failures stay moto's.

Measured in this process through the worker's own reading path (``RemoteReader``, the
reader registry, ``read_tile``), without the api and the queue -- benchmark 8 measures
the whole stack for Girder files, and the remote reading is what differs here. Each
first-tile sample is cold: a new reader (empty block cache), an emptied Redis (no shared
directory blocks), an empty download folder. Tiles are the file's own JPEG bytes (read
as stored, no decoding), so the viewport numbers are the cost of fetching. DICOMweb
tiles are checked against the same series read from its files by the local DICOM
reader, the others against the local TIFF.

The bytes and requests each step cost are counted by the servers themselves.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.bench import harness, remote_setup
from tests.bench.bench_remote import level_count
from tests.bench.dicomweb_setup import DicomWebPlace, dicomweb_place
from tests.bench.harness import BenchError, Processes
from tests.bench.report import Section, median, ms
from tests.remoteservers import Place, RangeServer, RequestLog, s3_serving
from tilecast.common.settings import Settings
from tilecast.workers.describe import open_path
from tilecast.workers.remote.opening import RemoteReader, forget_readers
from tilecast.workers.sources import ImageSource, open_source

LATENCY = 0.020  # seconds added to every answer by the servers
BUCKET = "bench"
PREFIX = "slides"
VIEWPORT = 8  # a viewport of VIEWPORT x VIEWPORT native tiles
THREADS = 8  # tiles of a viewport read at once (a viewer asks for them together)
TILE = 256
KINDS = ("http", "s3", "dicomweb")
DOWNLOADED = ("http", "s3")  # the places whose object can be downloaded whole
MB = 1e6


@dataclass
class Cost:
    seconds: float
    requests: int
    bytes: int


@dataclass
class Samples:
    costs: dict[str, list[Cost]] = field(default_factory=dict)

    def add(self, name: str, cost: Cost) -> None:
        self.costs.setdefault(name, []).append(cost)

    def get(self, name: str) -> list[Cost]:
        return self.costs.get(name, [])


@dataclass(frozen=True)
class Tiles:
    native: tuple[int, int, int]  # (z, x, y): asked first, mid-image
    overview: tuple[int, int, int]  # the whole image in one tile
    distant: tuple[int, int, int]  # far from the first
    top: int  # the full-resolution level
    across: int
    down: int


def pick_tiles() -> Tiles:
    top = level_count(remote_setup.WIDTH, remote_setup.HEIGHT) - 1
    across = -(-remote_setup.WIDTH // TILE)
    down = -(-remote_setup.HEIGHT // TILE)
    return Tiles((top, across // 2, down // 2), (0, 0, 0), (top, across - 3, 2), top, across, down)


def viewport(tiles: Tiles, number: int) -> list[tuple[int, int, int]]:
    """The ``number``-th viewport: an 8 x 8 block of native tiles nobody read before."""
    x0 = 4 + (number * 3 * VIEWPORT) % (tiles.across - 2 * VIEWPORT)
    y0 = 4 + (number * 2 * VIEWPORT) % (tiles.down - 2 * VIEWPORT)
    return [(tiles.top, x0 + dx, y0 + dy) for dy in range(VIEWPORT) for dx in range(VIEWPORT)]


@dataclass(frozen=True)
class Endpoint:
    """One place the image is read from: its locator, a worker's settings for it, the
    log of its server."""

    kind: str
    locator: str
    settings: Settings
    log: RequestLog
    place: Place | None = None  # S3 and HTTP: the object's Place (for downloads)
    local: Path | None = None  # what its tiles equal read locally (default: the TIFF)


@dataclass
class Bench:
    ends: dict[str, Endpoint]
    image: remote_setup.RemoteImage
    tiles: Tiles
    redis: harness.RedisServer
    scratch: Path

    def cold(self) -> None:
        """Nothing cached anywhere: no reader (blocks), Redis emptied, no downloads."""
        self.redis.client().flushall()
        forget_readers()
        shutil.rmtree(self.scratch / "downloads", ignore_errors=True)

    def measured(self, kind: str, action: Callable[[], object], ranges: bool = True) -> Cost:
        """What ``action`` cost; ``ranges``: an object store's object must have been read
        by range requests only."""
        log = self.ends[kind].log
        mark = log.mark()
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
        requests = log.since(mark, "GET") + log.since(mark, "HEAD")
        whole = [r for r in requests if r.method == "GET" and r.status == 200]
        if ranges and self.ends[kind].place is not None and whole:
            raise BenchError(f"{kind}: a whole object was fetched where ranges were asked")
        return Cost(seconds, len(requests), sum(r.sent for r in requests))

    def range_round(self, kind: str, samples: Samples) -> None:
        """Open and read the first tile; then the overview, then a distant tile."""
        end = self.ends[kind]
        self.cold()
        opened: list[ImageSource] = []

        def first() -> None:
            opened.append(open_path(end.locator, end.settings).source)
            opened[0].read_tile(*self.tiles.native)

        samples.add(f"{kind}:range:first", self.measured(kind, first))
        source = opened[0]
        for name in ("overview", "distant"):
            tile = getattr(self.tiles, name)
            cost = self.measured(kind, lambda t=tile: source.read_tile(*t))
            samples.add(f"{kind}:range:{name}", cost)
        for tile in (self.tiles.native, self.tiles.overview, self.tiles.distant):
            self.check(kind, source, tile)
        source.close()

    def check(self, kind: str, source: ImageSource, tile: tuple[int, int, int]) -> None:
        """The tile's pixels are the local file's: a place measured must read right."""
        local_path = self.ends[kind].local or self.image.path
        with open_source(str(local_path), Settings()) as local:
            expected = local.read_tile(*tile).array()
        if not np.array_equal(source.read_tile(*tile).array(), expected):
            raise BenchError(f"{kind}: tile {tile} differs from the local file's")

    def download_round(self, kind: str, samples: Samples) -> None:
        """Download the whole object first (the download cache), then open and read."""
        place = self.ends[kind].place
        assert place is not None
        self.cold()
        reader = RemoteReader(place.settings)

        def first_after_download() -> None:
            found = reader.open(place.source(self.image.path.name))
            local = reader.downloaded(found.file)  # type: ignore[arg-type]
            with open_source(local, place.settings) as source:
                source.read_tile(*self.tiles.native)

        try:
            cost = self.measured(kind, first_after_download, ranges=False)
        finally:
            reader.close()
            shutil.rmtree(self.scratch / "downloads", ignore_errors=True)
        if cost.bytes < self.image.size:
            raise BenchError(f"{kind}: the download fetched {cost.bytes} bytes only")
        samples.add(f"{kind}:download:first", cost)

    def local_round(self, samples: Samples) -> None:
        start = time.perf_counter()
        with open_source(str(self.image.path), Settings()) as source:
            source.read_tile(*self.tiles.native)
        samples.add("local:range:first", Cost(time.perf_counter() - start, 0, 0))

    def viewports(self, kind: str, count: int, samples: Samples) -> None:
        """``count`` viewports of an opened source (directories read once before)."""
        if kind == "local":
            source = open_source(str(self.image.path), Settings())
        else:
            self.cold()
            source = open_path(self.ends[kind].locator, self.ends[kind].settings).source
        with source, ThreadPoolExecutor(THREADS) as pool:
            source.read_tile(*self.tiles.overview)
            for number in range(count):
                tiles = viewport(self.tiles, number)

                def read_all(tiles: list[tuple[int, int, int]] = tiles) -> None:
                    list(pool.map(lambda tile: source.read_tile(*tile), tiles))

                if kind == "local":
                    start = time.perf_counter()
                    read_all()
                    cost = Cost(time.perf_counter() - start, 0, 0)
                else:
                    cost = self.measured(kind, read_all)
                    self.check(kind, source, tiles[-1])
                samples.add(f"{kind}:viewport", cost)


def run(ctx: harness.BenchContext, *, rounds: int, viewports: int) -> Section:
    image = remote_setup.make_image(ctx.image_dir)
    scratch = ctx.scratch / "urls"
    tiles = pick_tiles()
    samples = Samples()
    started = time.monotonic()
    folder = image.path.parent
    with (
        Processes(scratch) as procs,
        s3_serving(folder, BUCKET, PREFIX) as s3,
        RangeServer(folder) as http,
        dicomweb_place(image, ctx.image_dir) as dicomweb,
    ):
        uploaded = time.monotonic() - started - dicomweb.prepared_in
        s3.direct_ranges = True
        redis = harness.start_redis(procs)
        ends = {"dicomweb": dicomweb_endpoint(dicomweb, redis.url)}
        for server in (http, s3):
            place = Place.of(server, BUCKET, PREFIX, redis.url, scratch / "downloads",
                             remote_timeout=60.0)  # fmt: skip
            ends[place.kind] = Endpoint(place.kind, place.locator(image.path.name),
                                        place.settings, place.log, place)  # fmt: skip
            server.latency = LATENCY
        bench = Bench(ends, image, tiles, redis, scratch)
        for number in range(rounds):
            print(f"  urls round {number + 1}/{rounds}", flush=True)
            bench.local_round(samples)
            for kind in KINDS:
                bench.range_round(kind, samples)
                if kind in DOWNLOADED:
                    bench.download_round(kind, samples)
        print(f"  urls: {viewports} viewports each", flush=True)
        for kind in ("local", *KINDS):
            bench.viewports(kind, viewports, samples)
        forget_readers()
        series = series_note(dicomweb)
    return section(image, rounds, viewports, samples, uploaded, series, time.monotonic() - started)


def dicomweb_endpoint(place: DicomWebPlace, redis_url: str) -> Endpoint:
    place.proxy.latency = LATENCY
    settings = Settings(cache_url=redis_url, remote_timeout=60.0, **place.settings())  # type: ignore[arg-type]
    return Endpoint(
        "dicomweb", place.locator, settings.resolved(), place.proxy.log, local=place.series
    )


def series_note(place: DicomWebPlace) -> str:
    """What the DICOM series is: instances, concatenations, Orthanc's version."""
    import pydicom

    from tests.dicomslides import instances

    files = instances(place.series)
    groups: set[str] = set()
    for path in files:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["ConcatenationUID"])
        groups.add(str(dataset.get("ConcatenationUID") or path.name))
    size = sum(path.stat().st_size for path in files)
    return (
        f"DICOMweb: the same TIFF made a DICOM WSI series by OrthancWSIDicomizer (its JPEG "
        f"tiles copied; its default 10 MB instances): {len(files)} instances in "
        f"{len(groups)} concatenations (levels), {size / MB:,.0f} MB, stored into "
        f"{place.server} (the test suite's configuration) behind the tests' counting "
        "proxy, which adds the latency. Opening is the instance search, the series' "
        "WADO-RS metadata and one frame per concatenation for its stored syntax; each "
        "tile is one WADO-RS frame request "
        "(the server's JPEG passed through). Its tiles are checked against the series' "
        "files read by the local DICOM reader."
    )


# -- the report ------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"{ms(median(values))} ({ms(min(values))}-{ms(max(values))})"


def latency_cell(costs: list[Cost]) -> str:
    return spread([c.seconds for c in costs]) + " ms" if costs else "--"


def fetched_cell(costs: list[Cost]) -> str:
    if not costs:
        return "--"
    requests = median([c.requests for c in costs])
    size = median([c.bytes for c in costs])
    text = f"{size / MB:,.0f} MB" if size >= 100 * MB else f"{size / MB:.2f} MB"
    return f"{requests:.0f} request{'' if requests == 1 else 's'}, {text}"


def throughput_cell(costs: list[Cost]) -> str:
    if not costs:
        return "--"
    rates = [VIEWPORT * VIEWPORT / c.seconds for c in costs]
    return f"{median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def section(
    image: remote_setup.RemoteImage,
    rounds: int,
    viewports: int,
    samples: Samples,
    uploaded: float,
    series: str,
    seconds: float,
) -> Section:
    def row(label: str, name: str, cell: object, local: str = "--") -> list[str]:
        return [label, local] + [cell(samples.get(f"{kind}:{name}")) for kind in KINDS]  # type: ignore[operator]

    rows = [
        row("first native tile, read by range (DICOMweb: frame): latency", "range:first",
            latency_cell,
            latency_cell(samples.get("local:range:first"))),
        row("... fetched (opening and the tile)", "range:first", fetched_cell, "none"),
        row("then the z=0 tile: latency", "range:overview", latency_cell),
        row("... fetched", "range:overview", fetched_cell),
        row("then a distant native tile: latency", "range:distant", latency_cell),
        row("... fetched", "range:distant", fetched_cell),
        row("first native tile after downloading the whole file: latency", "download:first",
            latency_cell),
        row("... fetched", "download:first", fetched_cell),
        row(f"{VIEWPORT * VIEWPORT}-tile viewport ({VIEWPORT} x {VIEWPORT} native tiles, "
            f"{THREADS} threads): tiles/s", "viewport", throughput_cell,
            throughput_cell(samples.get("local:viewport"))),
        row("... fetched per viewport", "viewport", fetched_cell, "none"),
    ]  # fmt: skip
    range_first = median([c.seconds for c in samples.get("s3:range:first")])
    download_first = median([c.seconds for c in samples.get("s3:download:first")])
    notes = [
        f"The image: {remote_setup.WIDTH} x {remote_setup.HEIGHT}, 256 x 256 JPEG tiles "
        f"(Q 90), BigTIFF pyramid, {image.size / 1024**3:.2f} GiB "
        f"(`{image.path.name}`, made by tests/bench/remote_setup.py, shared with benchmark 8).",
        f"Every answer of every server waits {LATENCY * 1000:.0f} ms (the servers' and the "
        "DICOMweb proxy's `latency`): "
        "a request costs a round trip, as on a real network; loopback bandwidth otherwise.",
        "Every place's tiles are checked equal to the local file's (first, z=0 and distant "
        "tiles, and a tile of each viewport).",
        f"First-tile rows: {rounds} cold round(s), median (min-max); each from a new reader "
        "with an empty block cache, an emptied Redis and an empty download cache; latency "
        "includes opening (HEAD, the header and directories), the reader's choice and the "
        "tile's bytes. The local column opens the file from the page cache.",
        f"By range, S3: the first tile in {ms(range_first)} ms vs {ms(download_first)} ms "
        f"after downloading {image.size / MB:,.0f} MB whole "
        f"({download_first / range_first:,.0f}x).",
        f"Viewports: {viewports} per place, each an {VIEWPORT} x {VIEWPORT} block of "
        "full-resolution tiles nobody read before, read by "
        f"{THREADS} threads from a source opened once (its directories read); tiles/s is "
        "64 over the viewport's wall time, median (min-max). Raw tiles (the stored JPEG "
        "bytes), so this is the cost of fetching, not of rendering. A row of a viewport "
        "lies in one or two 256 KiB blocks: the threads reading a row wait for the one "
        "fetch of its blocks (workers/remote/blocks.py), so a remote viewport costs about "
        "a round trip per row, not per tile.",
        series,
        dicomweb_viewport_note(samples),
        f"moto's S3 holds the object in its own storage (uploaded in {uploaded:.0f} s); its "
        "ranged GETs are answered from that storage reading the range only "
        "(`S3Server(direct_ranges=True)`: moto copies the whole object for every GET), "
        "HEADs and the whole download are moto's own.",
        f"Benchmark wall time {seconds:.0f} s.",
    ]
    return Section(
        title="11. URL sources: first tile of a 1 GB slide by range, and viewport throughput",
        measures=(
            "The worker's reading path in one process (reader, registry, `read_tile`; no "
            "api or queue) over the test suite's servers on loopback with "
            f"{LATENCY * 1000:.0f} ms added to every request: time to the first tile by "
            "range reads vs after downloading the whole file first, and the read rate of "
            "64-tile viewports from a local file, S3, HTTP and DICOMweb. Bytes and requests "
            "are counted by the servers (DICOMweb: by the proxy in front of Orthanc)."
        ),
        headers=[
            "",
            "local file",
            "HTTP (Range server)",
            "S3 (moto server)",
            "DICOMweb (Orthanc)",
        ],
        rows=rows,
        notes=notes,
    )


def dicomweb_viewport_note(samples: Samples) -> str:
    costs = samples.get("dicomweb:viewport")
    tiff = samples.get("http:viewport")
    if not costs or not tiff:
        return "DICOMweb viewports: none measured."
    rate = median([VIEWPORT * VIEWPORT / c.seconds for c in costs])
    other = median([VIEWPORT * VIEWPORT / c.seconds for c in tiff])
    frame = median([c.seconds for c in samples.get("dicomweb:range:distant")])
    return (
        f"DICOMweb viewports cost a request per tile ({median([c.requests for c in costs]):.0f} "
        f"per viewport, against about a round trip per row for a TIFF by range, whose "
        f"256 KiB blocks also fetch twice the bytes): {rate:,.0f} tiles/s vs {other:,.0f} "
        f"from the TIFF over HTTP. One frame alone (the distant tile) took {ms(frame)} ms, "
        f"{LATENCY * 1000:.0f} of them the added latency: the rest is Orthanc's, which "
        "takes longer for a frame of a 10 MB instance than of a small one (docs/REMOTE.md), "
        "and 8 threads on this machine's 2 cores wait on it more than on the network. A "
        "viewport's frames could be asked together (`frames/1,2,3` of each instance), "
        "which tilecast does not do yet (a tile is rendered by a task of its own)."
    )
