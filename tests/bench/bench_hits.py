"""Benchmark 1: cache-hit throughput of ``tilecast api``, per HTTP server, against a bare
Flask+Redis app, Girder 3.2 with large_image's plugin, and raw ``redis-benchmark``.

1. tilecast and the bare app (``tests/bench/bare_app.py``) run at once under each server
   of ``tilecast.servers`` (granian, gunicorn gthread) with the same workers and threads,
   read the same Redis (started here on a free port) and return the same bytes for the
   same URLs; the tiles were rendered and cached through tilecast itself first. The same
   wrk command loads each in turn, over a spread of distinct tile URLs, in a rotating
   order, several rounds; the report gives the median of each side and the median of the
   per-round ratios.
1b. Girder (``tests/bench/girder_side.py``) serves the same image's tiles from large_image's
   tile cache, warmed with the same tile set, in the same rounds as tilecast under its
   default server; ``redis-benchmark`` GETs values of the mean tile size from the same
   Redis over as many connections: the storage limit under the HTTP layer.
1c. Hits while requests wait for renders: tilecast's default api shape (2 processes x 32
   threads) under each server, wrk hits alone and then beside 512 clients holding
   requests that wait for a render that never comes (the worker is stopped), so that a
   server whose waiting requests starve hits shows it. ``python -m tests.bench.run
   --only waiting`` runs this part alone.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import girder_side, harness, hit_cpu
from tests.bench.harness import HOST, BenchError, Processes
from tests.bench.report import Section, median
from tests.bench.wrk import WrkResult, run_wrk
from tilecast import procs as tc_procs
from tilecast.common.settings import Settings
from tilecast.servers import DEFAULT_SERVER, SERVERS

# The full-resolution JPEG tiles (~34 KB); the bench image's own compress to ~3 KB.
FULL_TILE_BYTES = 34_000
# The mixed load: tilecast api's defaults, and how many requests wait at once (issue 20:
# 512 open connections waiting for renders beside the hit load).
MIXED_WORKERS, MIXED_THREADS, MIXED_CONNECTIONS = 2, 32, 32
MIXED_WAITERS = 512
# Long enough that the waits, not a stream of new misses, are the load: each waiting
# client asks MIXED_WAITERS / MIXED_RENDER_TIMEOUT cold tiles a second in all.
MIXED_RENDER_TIMEOUT = 10.0
# Enough queued tasks for every cold tile asked in a run: the worker is stopped, and a
# backpressure 503 would end a wait early instead of measuring it.
MIXED_QUEUE_DEPTH = 1_000_000


@dataclass(frozen=True)
class HitConfig:
    """The settings of one comparison (the same for every side)."""

    workers: int
    threads: int
    connections: int
    # The full-resolution level's keys holding FULL_TILE_BYTES each instead of the
    # levels below it (~3.4 KB): the shape the issue measured tilecast as shipped with.
    full_resolution: bool = False


@dataclass
class Side:
    """One server under load: where it listens, whose CPU it spends, the URLs it serves."""

    name: str
    port: int
    pids: list[int]  # the master (and any helper, e.g. Girder's database)
    processes: int  # worker processes that should each hold some of wrk's connections
    paths_file: Path


def start_bare(
    procs: Processes,
    tilecast_env: dict[str, str],
    redis_url: str,
    key_prefix: str,
    key_suffix: str,
    cache_control: str,
    *,
    workers: int,
    threads: int,
    server: str = DEFAULT_SERVER,
    name: str = "bare",
) -> tuple[harness.Child, int]:
    port = harness.free_port()
    env = {
        **tilecast_env,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_KEY_PREFIX": key_prefix,
        "BENCH_KEY_SUFFIX": key_suffix,
        "BENCH_CACHE_CONTROL": cache_control,
    }
    argv = [
        sys.executable,
        "-m",
        "tests.bench.bare_app",
        *["--bind", f"{HOST}:{port}"],
        *["--workers", str(workers), "--threads", str(threads), "--server", server],
    ]
    child = procs.start(name, argv, env)
    harness.wait_for(
        f"bare app on port {port}", lambda: harness.http_ok(port, "/nothing"), 60, [child]
    )
    return child, port


def fetch_all(port: int, paths: Sequence[str], concurrency: int = 8) -> list[harness.Reply]:
    """GET every path (in order of ``paths``) over ``concurrency`` keep-alive connections."""
    chunks = [list(paths[i::concurrency]) for i in range(concurrency)]

    def run(chunk: list[str]) -> list[harness.Reply]:
        http = harness.Http(port)
        try:
            return [http.get(p) for p in chunk]
        finally:
            http.close()

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(run, chunks))
    replies: list[harness.Reply | None] = [None] * len(paths)
    for i, chunk_replies in enumerate(results):
        for j, reply in enumerate(chunk_replies):
            replies[i + j * concurrency] = reply
    return [r for r in replies if r is not None]


def key_template(client: object, source_id: str, z: int, x: int, y: int) -> tuple[str, str]:
    """The prefix (up to ``z``) and suffix (after ``y``) of the keys tilecast wrote for
    plain JPEG tiles of ``source_id``, read back from Redis."""
    pattern = f"tc:tile:{source_id}:*:{z}:{x}:{y}:*"
    keys = [k.decode() for k in client.scan_iter(match=pattern, count=1000)]  # type: ignore[attr-defined]
    if len(keys) != 1:
        raise BenchError(f"expected one cached key matching {pattern}, found {keys}")
    key = keys[0]
    marker = f":{z}:{x}:{y}:"
    head, tail = key.split(marker)
    return head + ":", ":" + tail


def shipped(env: dict[str, str]) -> dict[str, str]:
    """The measured api's environment with prefetch as shipped (the bench stacks turn it
    off, harness.tilecast_env): on by default, every hit is handed to its thread."""
    return {**env, "TILECAST_PREFETCH": str(Settings().prefetch)}


@dataclass
class SideResult:
    rounds: list[WrkResult]
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, each round
    # wrk connections that some server process had accepted during each round (``ss``).
    accepted: list[int] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return median([r.rps for r in self.rounds])

    @property
    def errors(self) -> int:
        return sum(r.error_count for r in self.rounds)

    def median_round(self) -> WrkResult:
        return sorted(self.rounds, key=lambda r: r.rps)[len(self.rounds) // 2]

    def latency(self) -> str:
        m = self.median_round()
        return f"{m.latency_us['p50'] / 1000:.1f} / {m.latency_us['p99'] / 1000:.1f}"


def round_ratios(a: SideResult, b: SideResult) -> list[float]:
    return [x.rps / y.rps for x, y in zip(a.rounds, b.rounds, strict=True) if y.rps]


def connections_per_process(port: int) -> dict[int, int] | None:
    """Established server-side connections on ``port`` per owning pid (``ss``); None
    when ``ss`` is not there to tell."""
    ss = shutil.which("ss")
    if not ss:
        return None
    out = subprocess.run(
        [ss, "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out)))


def server_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of ``pids`` and all their live descendants so far."""
    every = set(pids)
    for pid in pids:
        every.update(tc_procs.descendants(pid))
    return cpu_seconds(every)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of exactly ``pids`` (not their descendants) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def balanced_run(
    wrk: str, side: Side, connections: int, seconds: float
) -> tuple[WrkResult, float, int, int]:
    """One wrk run in which every worker process of the server holds some of wrk's
    keep-alive connections; the number of runs thrown away is returned too.

    A server's worker processes race to accept wrk's connections, all opened at once; now
    and then one worker wins every race and serves all of them while the other idles,
    which halves the throughput of that run whichever app it serves. Such runs measure the
    accept race, not the app: they are repeated (up to 4 times). Also returned: how many
    of wrk's connections the server had accepted (a connection left in the listen backlog
    sends requests that are never answered within the run, invisible to wrk's counts)."""
    discarded = 0
    while True:
        seen: dict[int, int] = {}

        def sample(into: dict[int, int] = seen) -> None:
            time.sleep(min(1.0, seconds / 3))
            into.update(connections_per_process(side.port) or {})

        sampler = threading.Thread(target=sample)
        cpu_before = server_cpu_seconds(side.pids)
        sampler.start()
        result = run_wrk(wrk, side.port, side.paths_file, seconds=seconds, connections=connections)
        sampler.join()
        cpu = server_cpu_seconds(side.pids) - cpu_before
        accepted = sum(seen.values()) if seen else connections
        if side.processes <= 1 or not seen or len(seen) >= side.processes or discarded >= 4:
            return result, cpu * 1e6 / max(1, result.requests), discarded, accepted
        discarded += 1
        print(f"    (run discarded: connections per worker {sorted(seen.values())})", flush=True)


def compare(
    wrk: str,
    sides: Sequence[Side],
    connections: int,
    *,
    seconds: float,
    rounds: int,
    warmup: float,
    label: str,
) -> tuple[dict[str, SideResult], int]:
    """``rounds`` runs of every side, each round in a rotated order."""
    for side in sides:  # warm each (connections, imports, Redis pools) before timing
        run_wrk(wrk, side.port, side.paths_file, seconds=warmup, connections=connections)
    results: dict[str, SideResult] = {side.name: SideResult([]) for side in sides}
    discarded = 0
    for r in range(rounds):
        shift = r % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            result, cpu_us, thrown, accepted = balanced_run(wrk, side, connections, seconds)
            discarded += thrown
            results[side.name].rounds.append(result)
            results[side.name].cpu_us.append(cpu_us)
            results[side.name].accepted.append(accepted)
            print(
                f"  hits {label} round {r + 1} {side.name}: {result.rps:,.0f} req/s, "
                f"server CPU {cpu_us:.0f} us/request, errors {result.error_count}"
                + (f", only {accepted} connections accepted" if accepted < connections else ""),
                flush=True,
            )
    return results, discarded


@dataclass
class Prepared:
    """What every part of the benchmark shares: the warmed tiles and the paths file."""

    procs: Processes
    stack: harness.Stack
    source_id: str
    meta: dict[str, object]
    tiles: list[tuple[int, int, int]]
    paths: list[str]
    paths_file: Path
    prefix: str
    suffix: str
    cache_control: str
    mean_bytes: float
    top: int
    # The full-resolution level's tiles, for configurations that ask those.
    full_paths: list[str]
    full_paths_file: Path

    def key(self, z: int, x: int, y: int) -> str:
        """The Redis key of tile (z, x, y), as tilecast wrote it (and the bare app reads)."""
        return f"{self.prefix}{z}:{x}:{y}{self.suffix}"


def prepare(procs: Processes, ctx: harness.BenchContext, levels_below_base: int) -> Prepared:
    stack = harness.start_stack(
        procs, [ctx.image_dir], worker_concurrency=2, api_workers=1, api_threads=8
    )
    source_id = harness.add_source(stack, ctx.pyramid)
    meta = harness.tile_metadata(stack, source_id)
    top = int(meta["levels"]) - 1
    tiles = [
        (z, x, y)
        for z in range(top - levels_below_base, -1, -1)
        for x, y in harness.level_tiles(meta, z)
    ]
    paths = [harness.tile_path(source_id, z, x, y) for z, x, y in tiles]
    warmed = warm(stack.api_port, paths, "tiles")
    full_paths = [
        harness.tile_path(source_id, top, x, y) for x, y in harness.level_tiles(meta, top)
    ]
    warm(stack.api_port, full_paths, "full-resolution tiles")
    # Hits need no worker: stop it so that it takes no CPU from the servers measured
    # (and so that the mixed load's misses wait for a render that never comes).
    assert stack.worker is not None and stack.api is not None
    procs.stop(stack.worker)
    procs.stop(stack.api)
    z0, x0, y0 = tiles[0]
    prefix, suffix = key_template(stack.redis.client(), source_id, z0, x0, y0)
    sizes = [len(r.body) for r in warmed]
    paths_file = procs.scratch / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    full_paths_file = procs.scratch / "paths-full.txt"
    full_paths_file.write_text("\n".join(full_paths) + "\n")
    prep = Prepared(
        procs=procs,
        stack=stack,
        source_id=source_id,
        meta=meta,
        tiles=tiles,
        paths=paths,
        paths_file=paths_file,
        prefix=prefix,
        suffix=suffix,
        cache_control=warmed[0].headers.get("cache-control", ""),
        mean_bytes=sum(sizes) / len(sizes),
        top=top,
        full_paths=full_paths,
        full_paths_file=full_paths_file,
    )
    fill_full_resolution(prep)
    return prep


def warm(port: int, paths: list[str], what: str) -> list[harness.Reply]:
    """Every tile of ``paths`` asked through tilecast, so that it is cached; the answers."""
    print(f"  hits: warming {len(paths)} {what} through tilecast", flush=True)
    warmed = fetch_all(port, paths, concurrency=16)
    bad = [(p, r.status) for p, r in zip(paths, warmed, strict=True) if r.status != 200]
    if bad:
        raise BenchError(f"warming tiles failed for {len(bad)} tiles, e.g. {bad[:3]}")
    return warmed


def full_resolution_tiles(prep: Prepared) -> list[tuple[int, int]]:
    return harness.level_tiles(prep.meta, prep.top)


def fill_full_resolution(prep: Prepared) -> None:
    """Overwrite each full-resolution tile tilecast cached with FULL_TILE_BYTES of random
    bytes (the hit path reads a key's bytes, whatever they are)."""
    pipe = prep.stack.redis.client().pipeline(transaction=False)
    for x, y in full_resolution_tiles(prep):
        pipe.set(prep.key(prep.top, x, y), os.urandom(FULL_TILE_BYTES))
    pipe.execute()


# --- Girder ----------------------------------------------------------------------------


@dataclass
class GirderSide:
    side: Side | None
    note: str  # what ran, or why it did not
    mean_bytes: float = 0.0
    bodies: list[bytes] = field(default_factory=list)  # its tiles, in the order of the paths
    identical: int = 0  # tiles whose bytes equal tilecast's


def start_girder(prep: Prepared, ctx: harness.BenchContext) -> GirderSide:
    try:
        girder = girder_side.start(prep.procs, ctx.image_dir)
        item_id = girder_side.upload_large_image(girder, ctx.pyramid)
    except (BenchError, OSError) as exc:
        print(f"  girder: not run: {exc}", flush=True)
        return GirderSide(None, f"Girder did not run: {str(exc)[:300]}")
    paths = [girder_side.tile_path(item_id, z, x, y) for z, x, y in prep.tiles]
    print(f"  girder: warming {len(paths)} tiles through Girder (twice)", flush=True)
    replies = fetch_all(girder.port, paths)
    bad = [(p, r.status) for p, r in zip(paths, replies, strict=True) if r.status != 200]
    if bad:
        raise BenchError(f"girder tiles failed for {len(bad)} tiles, e.g. {bad[:3]}")
    fetch_all(girder.port, paths)  # the second pass: every tile is in the cache already
    paths_file = prep.procs.scratch / "girder-paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    db = next(c for c in prep.procs.children if c.name == "secantusdb")
    side = Side("girder", girder.port, [girder.child.proc.pid, db.proc.pid], 1, paths_file)
    versions = ", ".join(
        f"{p} {girder_side.venv_version(girder.venv, p)}"
        for p in ("girder", "girder-large-image", "large-image", "secantusdb")
    )
    bodies = [r.body for r in replies]
    return GirderSide(side, versions, sum(map(len, bodies)) / len(bodies), bodies)


# --- redis-benchmark -------------------------------------------------------------------


@dataclass
class RedisBench:
    rps: float
    p50_ms: float
    p99_ms: float
    command: str


def run_redis_benchmark(port: int, size: int, connections: int, requests: int) -> RedisBench:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise BenchError("redis-benchmark is missing (Debian: apt-get install -y redis-tools)")
    # SET fills the keys first, so that every GET finds a value of ``size`` bytes.
    argv = [
        binary,
        *["-h", HOST, "-p", str(port), "-c", str(connections), "-n", str(requests)],
        *["-d", str(size), "-r", "1024", "-t", "set,get", "--csv"],
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "GET":
            # "test","rps","avg","min","p50","p95","p99","max" (milliseconds)
            return RedisBench(float(cells[1]), float(cells[4]), float(cells[6]), " ".join(argv))
    raise BenchError(
        f"redis-benchmark printed no GET line: {out.stdout[-500:]} {out.stderr[-500:]}"
    )


# --- the mixed load --------------------------------------------------------------------


@dataclass
class WaiterStats:
    answers: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)  # the server's, during each round
    rss_alone_mib: list[float] = field(default_factory=list)  # ... and with no waits
    # Requests outstanding for more than a second when each round's hit load ended.
    waiting: list[int] = field(default_factory=list)
    _since: dict[int, float] = field(default_factory=dict)  # client -> its request's start

    def outstanding(self, older_than: float) -> int:
        now = time.monotonic()
        return sum(1 for started in list(self._since.values()) if now - started > older_than)


@contextlib.contextmanager
def waiting_clients(port: int, paths: Iterator[str], count: int) -> Iterator[WaiterStats]:
    """``count`` clients, each asking one cold tile after another over its own keep-alive
    connection, each request waiting for a render that never comes (until the api's
    render timeout answers 504). On exit every connection is shut down at once (the
    requests still waiting in the server go on waiting until their timeout)."""
    stats = WaiterStats()
    stop = threading.Event()
    lock = threading.Lock()
    conns: list[http.client.HTTPConnection] = []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=MIXED_RENDER_TIMEOUT + 30)
        with lock:
            conns.append(conn)
        try:
            while not stop.is_set():
                with lock:
                    path = next(paths)
                started = time.monotonic()
                stats._since[index] = started
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                del stats._since[index]
                with lock:
                    stats.answers[response.status] += 1
                    stats.seconds.append(time.monotonic() - started)
                if response.status != 504:  # e.g. a 503 of backpressure: do not spin
                    stop.wait(0.5)
        except (OSError, http.client.HTTPException):
            if not stop.is_set():
                with lock:
                    stats.answers[0] += 1  # a connection error, counted as status 0
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    time.sleep(0.5 + count / 500)  # let every client's first request reach its wait
    try:
        yield stats
    finally:
        stop.set()
        with lock:
            for conn in conns:
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(5)


@dataclass
class MixedResult:
    alone: SideResult
    mixed: SideResult
    waiters: WaiterStats


def run_mixed(
    prep: Prepared,
    ctx: harness.BenchContext,
    server: str,
    *,
    seconds: float,
    rounds: int,
    waiters: int = MIXED_WAITERS,
) -> MixedResult:
    env = {
        **shipped(prep.stack.env),
        "TILECAST_RENDER_TIMEOUT": str(MIXED_RENDER_TIMEOUT),
        "TILECAST_MAX_QUEUE_DEPTH": str(MIXED_QUEUE_DEPTH),
    }
    api, port = harness.start_api(
        prep.procs,
        env,
        workers=MIXED_WORKERS,
        threads=MIXED_THREADS,
        server=server,
        name=f"api-mixed-{server}",
    )
    side = Side(server, port, [api.proc.pid], MIXED_WORKERS, prep.paths_file)
    full_resolution = full_resolution_tiles(prep)
    # The waiting clients ask the full-resolution tiles, which section 1 asked warm: gone
    # again, so that each of them waits for a render (the worker is stopped).
    prep.stack.redis.client().delete(*(prep.key(prep.top, x, y) for x, y in full_resolution))
    cold = itertools.cycle(
        harness.tile_path(prep.source_id, prep.top, x, y) for x, y in full_resolution
    )
    alone, mixed = SideResult([]), SideResult([])
    stats_all = WaiterStats()
    run_wrk(ctx.wrk, port, prep.paths_file, seconds=1, connections=MIXED_CONNECTIONS)
    try:
        for r in range(rounds):
            result, cpu, _, _ = balanced_run(ctx.wrk, side, MIXED_CONNECTIONS, seconds)
            alone.rounds.append(result)
            alone.cpu_us.append(cpu)
            stats_all.rss_alone_mib.append(server_rss_mib([api.proc.pid]))
            with waiting_clients(port, cold, waiters) as stats:
                result, cpu, _, _ = balanced_run(ctx.wrk, side, MIXED_CONNECTIONS, seconds)
                rss = server_rss_mib([api.proc.pid])
                stats_all.waiting.append(stats.outstanding(1.0))
            mixed.rounds.append(result)
            mixed.cpu_us.append(cpu)
            stats_all.answers.update(stats.answers)
            stats_all.seconds.extend(stats.seconds)
            stats_all.rss_mib.append(rss)
            print(
                f"  mixed {server} round {r + 1}: hits alone {alone.rounds[-1].rps:,.0f} req/s "
                f"p99 {alone.rounds[-1].latency_us['p99'] / 1000:.1f} ms, beside {waiters} "
                f"waiting requests {result.rps:,.0f} req/s p99 "
                f"{result.latency_us['p99'] / 1000:.1f} ms, errors {result.error_count}, "
                f"waiting at the end {stats_all.waiting[-1]}, waiter answers "
                f"{dict(stats.answers)}, server RSS {rss:.0f} MiB "
                f"(alone {stats_all.rss_alone_mib[-1]:.0f})",
                flush=True,
            )
            # The requests of the clients just gone wait on in the server until their
            # timeout: the next round's "alone" starts once they are answered.
            time.sleep(MIXED_RENDER_TIMEOUT + 1)
    finally:
        prep.procs.stop(api)
        if any(status >= 500 and status not in (503, 504) for status in stats_all.answers):
            # Not an answer this load should give: show why, before the logs are gone.
            lines = api.log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if "ERROR" in line or "Error" in line]
            print(f"  {server}: unexpected answers; the api log's errors:", flush=True)
            for line in (errors or lines)[-40:]:
                print(f"    {line}", flush=True)
    return MixedResult(alone, mixed, stats_all)


def server_rss_mib(pids: Sequence[int]) -> float:
    """Resident memory of ``pids`` and their live descendants, MiB."""
    every = set(pids)
    for pid in pids:
        every.update(tc_procs.descendants(pid))
    total = 0
    for pid in every:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def run_waiting(
    ctx: harness.BenchContext,
    *,
    seconds: float = 5,
    rounds: int = 5,  # more than the full run: the part alone can afford them
    servers: Sequence[str] = SERVERS,
) -> list[Section]:
    """Section 1c alone (``python -m tests.bench.run --only waiting``)."""
    with Processes(ctx.scratch / "waiting") as procs:
        prep = prepare(procs, ctx, levels_below_base=1)
        return [mixed_part(prep, ctx, servers, seconds=seconds, rounds=rounds)]


def mixed_part(
    prep: Prepared,
    ctx: harness.BenchContext,
    servers: Sequence[str],
    *,
    seconds: float,
    rounds: int,
) -> Section:
    section = mixed_section()
    verdicts = []
    for server in sorted(servers, key=lambda s: s != DEFAULT_SERVER):
        result = run_mixed(prep, ctx, server, seconds=seconds, rounds=rounds)
        add_mixed_row(section, server, result)
        verdicts.append(mixed_verdict(server, result))
    section.notes.append(
        "Goal (issue 20): beside the waiting requests, hit p99 <= 50 ms and >= 0.8 of the "
        "hit rate alone -- " + "; ".join(verdicts) + "."
    )
    return section


def mixed_verdict(server: str, result: MixedResult) -> str:
    ratio = median(round_ratios(result.mixed, result.alone))
    alone, beside = median(p99_ms(result.alone)), median(p99_ms(result.mixed))
    met = ratio >= 0.8 and beside <= 50.0
    default = " (default)" if server == DEFAULT_SERVER else ""
    return (
        f"{server}{default}: {ratio:.2f}x the rate alone, p99 {beside:.1f} ms beside "
        f"({alone:.1f} ms alone), " + ("met" if met else "NOT met")
    )


# --- the benchmark ---------------------------------------------------------------------


def run(
    ctx: harness.BenchContext,
    *,
    configs: Sequence[HitConfig],
    seconds: float,
    rounds: int,
    warmup: float,
    levels_below_base: int,
    servers: Sequence[str] = SERVERS,
    girder: bool = True,
    mixed_seconds: float = 5,
    mixed_rounds: int = 3,
) -> list[Section]:
    with Processes(ctx.scratch / "hits") as procs:
        prep = prepare(procs, ctx, levels_below_base)
        girder_result = start_girder(prep, ctx) if girder else GirderSide(None, "not asked for")
        servers = sorted(servers, key=lambda s: s != DEFAULT_SERVER)  # the default first
        section = server_section(prep, servers, rounds, seconds)
        beside = beside_section(prep, girder_result, rounds, seconds)
        discarded_total = 0
        verdicts: list[str] = []
        short_runs: list[str] = []
        for index, config in enumerate(configs):
            sides: list[Side] = []
            for server in servers:
                api, api_port = harness.start_api(
                    procs,
                    shipped(prep.stack.env),
                    workers=config.workers,
                    threads=config.threads,
                    server=server,
                    name=f"api-{server}-{config.workers}x{config.threads}",
                )
                bare, bare_port = start_bare(
                    procs,
                    prep.stack.env,
                    prep.stack.redis.url,
                    prep.prefix,
                    prep.suffix,
                    prep.cache_control,
                    workers=config.workers,
                    threads=config.threads,
                    server=server,
                    name=f"bare-{server}-{config.workers}x{config.threads}",
                )
                paths, paths_file = prep.paths, prep.paths_file
                if config.full_resolution:
                    paths, paths_file = prep.full_paths, prep.full_paths_file
                check_same_bytes(api_port, bare_port, paths)
                if index == 0 and girder_result.side is not None and server == DEFAULT_SERVER:
                    count_identical(api_port, prep.paths, girder_result)
                sides.append(
                    Side(
                        f"tilecast {server}",
                        api_port,
                        [api.proc.pid],
                        config.workers,
                        paths_file,
                    )
                )
                sides.append(
                    Side(
                        f"bare {server}",
                        bare_port,
                        [bare.proc.pid],
                        config.workers,
                        paths_file,
                    )
                )
            # Girder joins the rounds of the first configuration only.
            if index == 0 and girder_result.side is not None:
                sides.append(girder_result.side)
            label = f"{config.workers}x{config.threads} c{config.connections}"
            results, discarded = compare(
                ctx.wrk,
                sides,
                config.connections,
                seconds=seconds,
                rounds=rounds,
                warmup=warmup,
                label=label,
            )
            for child in list(procs.children):
                if child.name.startswith(("api-", "bare-")):
                    procs.stop(child)
            discarded_total += discarded
            short_runs += [
                f"{name} ({min(r.accepted)} of {config.connections})"
                for name, r in results.items()
                if r.accepted and min(r.accepted) < config.connections
            ]
            verdicts += add_server_rows(section, config, servers, results, prep)
            if index == 0:
                add_beside_rows(beside, config, results, girder_result, prep)
        section.notes.insert(
            0, "Goal ratio tilecast / bare >= 1.0 (issue 20) -- " + ", ".join(verdicts) + "."
        )
        section.notes.append(
            "A server's worker processes race to accept wrk's connections, all opened at "
            "once; now and then one process wins them all and the other idles, halving that "
            "run's throughput whichever app is served. A run where some worker process held "
            "none of the connections (counted with `ss` during the run) is thrown away and "
            f"repeated: {discarded_total} such runs in this benchmark."
        )
        section.notes.append(
            "Every server held all of wrk's connections open in every run (counted with "
            "`ss` a second into the run; the least count per side): "
            + ("yes." if not short_runs else "no -- " + ", ".join(short_runs) + ".")
        )
        section.notes.append(in_process_note(prep))
        # The storage limit: Redis alone, after the HTTP servers are gone.
        connections = configs[0].connections
        try:
            bench = run_redis_benchmark(
                prep.stack.redis.port, round(prep.mean_bytes), connections, 200_000
            )
            add_redis_row(beside, bench, connections, prep.mean_bytes, beside_tilecast_rps(beside))
        except BenchError as exc:
            beside.notes.append(f"redis-benchmark did not run: {exc}")
        mixed = mixed_part(prep, ctx, servers, seconds=mixed_seconds, rounds=mixed_rounds)
        return [section, beside, mixed]


def in_process_note(prep: Prepared) -> str:
    """Section 1's CPU per hit without any server (tests/bench/hit_cpu.py): the apps
    themselves, on the same Redis, tiles of the mean size."""
    us = hit_cpu.in_process(prep.stack.redis.url, round(prep.mean_bytes), 3000, 5)
    tc, flask, bare = us["tilecast hit"], us["tilecast flask path hit"], us["bare hit"]
    return (
        "CPU per hit in-process (`tests/bench/hit_cpu.py`: each WSGI app called directly "
        "with a prepared environ, no HTTP server, median of 5 x 3,000 calls): tilecast "
        f"**{tc:.0f} us** (hit path, api/hitpath/), tilecast through Flask alone "
        f"(`TILECAST_HIT_PATH=0`) {flask:.0f} us, bare app {bare:.0f} us: tilecast / "
        f"bare = **{tc / bare:.2f}**; a 304 {us['tilecast 304']:.0f} us, a hit with an "
        f"Origin {us['tilecast hit, Origin']:.0f} us, at the current `gen` "
        f"{us['tilecast hit, gen']:.0f} us."
    )


def server_section(prep: Prepared, servers: Sequence[str], rounds: int, seconds: float) -> Section:
    meta = prep.meta
    return Section(
        title="1. Cache-hit throughput: tilecast api vs a bare Flask+Redis app, per HTTP server",
        measures=(
            "Requests per second answering tiles that are already in Redis. `tilecast api` "
            "(its whole hit path, api/hitpath/ in front of Flask: parse and validate the "
            "request, the source's generation, the key, one Redis GET, ETag, CORS and "
            "caching headers, request id and counters; prefetch on, as shipped: each hit "
            "is handed to the prefetch thread) against "
            "`tests/bench/bare_app.py` (one Flask route, one Redis GET of the key tilecast "
            "wrote, the same bytes and headers), both under the same server "
            f"({', '.join(servers)}; `tilecast api --server NAME`) with the same processes "
            "and threads, the same Redis, the same wrk command (1 thread, spread over "
            f"{len(prep.paths)} distinct tile URLs of levels z={prep.tiles[0][0]}..0 of the "
            f"{meta['sizeX']}x{meta['sizeY']} pyramidal JPEG TIFF, mean tile "
            f"{prep.mean_bytes / 1024:.1f} KiB; in the configuration marked full resolution, "
            f"its {len(prep.full_paths)} tiles at z={prep.top}, each key's value replaced by "
            f"{FULL_TILE_BYTES:,} random bytes after tilecast cached it -- the issue's "
            "~34 KB full-resolution JPEG tiles, which this image's own tiles (~3 KB) are "
            "not -- under `tilecast up`'s shape, 2 processes x 32 threads, with 64 "
            f"connections), {rounds} rounds of {seconds:.0f} s per side "
            "back to back, in a rotating order. req/s are the medians over rounds; ratios "
            "are medians of the per-round ratios (a round's runs are seconds apart, so they "
            "share the machine's state). wrk, Redis and the server share the machine's "
            "cores; on a busy machine the CPU ratio (server CPU time per request, read from "
            "/proc) moves less than req/s. *granian*: granian's WSGI interface (a Rust HTTP "
            "event loop per process, the app on a pool of `threads` Python threads); "
            "*gunicorn*: gunicorn's `gthread` worker. Goal: tilecast / bare >= 1.0 under "
            "each server."
        ),
        headers=[
            "server",
            "workers x threads",
            "wrk connections",
            "tiles asked (mean size)",
            "tilecast req/s",
            "bare req/s",
            "ratio tilecast / bare",
            "ratio range over rounds",
            "server CPU us/request tilecast / bare",
            "CPU ratio bare / tilecast",
            "tilecast p50 / p99 ms",
            "bare p50 / p99 ms",
            "errors",
        ],
    )


def tiles_label(config: HitConfig, prep: Prepared) -> str:
    if config.full_resolution:
        return f"z={prep.top} (full resolution), {FULL_TILE_BYTES / 1024:.1f} KiB"
    return f"z={prep.tiles[0][0]}..0, {prep.mean_bytes / 1024:.1f} KiB"


def add_server_rows(
    section: Section,
    config: HitConfig,
    servers: Sequence[str],
    results: dict[str, SideResult],
    prep: Prepared,
) -> list[str]:
    verdicts: list[str] = []
    for server in servers:
        tc, bare = results[f"tilecast {server}"], results[f"bare {server}"]
        ratios = round_ratios(tc, bare)
        ratio = median(ratios)
        verdicts.append(
            f"{server} {config.workers} x {config.threads} c{config.connections}"
            + (" full resolution" if config.full_resolution else "")
            + f": {ratio:.2f}, "
            + ("met" if ratio >= 1.0 else "NOT met")
        )
        section.rows.append(
            [
                server + (" (default)" if server == DEFAULT_SERVER else ""),
                f"{config.workers} x {config.threads}",
                str(config.connections),
                tiles_label(config, prep),
                f"{tc.rps:,.0f}",
                f"{bare.rps:,.0f}",
                f"**{ratio:.2f}**",
                f"{min(ratios):.2f} - {max(ratios):.2f}",
                f"{median(tc.cpu_us):.0f} / {median(bare.cpu_us):.0f}",
                f"{median(bare.cpu_us) / median(tc.cpu_us):.2f}",
                tc.latency(),
                bare.latency(),
                str(tc.errors + bare.errors),
            ]
        )
    others = [s for s in servers if s != DEFAULT_SERVER]
    for other in others:
        for app in ("tilecast", "bare"):
            ratios = round_ratios(results[f"{app} {DEFAULT_SERVER}"], results[f"{app} {other}"])
            section.notes.append(
                f"{config.workers} x {config.threads}, {app}: {DEFAULT_SERVER} / {other} = "
                f"**{median(ratios):.2f}** req/s (range {min(ratios):.2f} - {max(ratios):.2f})"
            )
    return verdicts


def beside_section(prep: Prepared, girder: GirderSide, rounds: int, seconds: float) -> Section:
    return Section(
        title="1b. Cache-hit throughput beside Girder 3.2 + large_image, and raw Redis",
        measures=(
            "The same tiles from three places. *tilecast*: `tilecast api` under its default "
            f"server ({DEFAULT_SERVER}), the first configuration of section 1, in the same "
            "rounds. *Girder*: Girder 3.2 with large_image's Girder plugin "
            "(`girder-large-image`) serving `/api/v1/item/{id}/tiles/zxy/{z}/{x}/{y}` for the "
            "same image, uploaded into Girder and made a large image by the plugin, every "
            "tile asked twice beforehand so that all are in large_image's tile cache; "
            "`girder serve --mode production` (CherryPy, 100 threads, one process), "
            "`secantusdb` as its MongoDB, anonymous reads of a public folder, access log "
            "off; large_image's `python` tile-cache backend (an in-process LRU: what it "
            "uses when no memcached or Redis is configured, and the fastest for one "
            "process: a hit is a dictionary lookup, no network hop), sized so that every "
            "tile fits. Girder ran in the same wrk rounds as the section 1 sides, with the "
            f"same connections and {seconds:.0f} s runs ({rounds} rounds); its server CPU "
            "includes its database's. *redis-benchmark*: GET of values of the mean tile "
            "size from the same redis-server, as many connections, no pipelining: the "
            "storage limit under any HTTP layer. Goal: tilecast >= 3x Girder."
        ),
        headers=[
            "system",
            "connections",
            "req/s",
            "p50 / p99 ms",
            "server CPU us/request",
            "mean body bytes",
            "tilecast req/s / this",
            "errors",
        ],
        notes=[f"Girder side: {girder.note}."] if girder.side else [girder.note],
    )


def add_beside_rows(
    section: Section,
    config: HitConfig,
    results: dict[str, SideResult],
    girder: GirderSide,
    prep: Prepared,
) -> None:
    tc = results[f"tilecast {DEFAULT_SERVER}"]
    section.rows.append(
        [
            f"tilecast api ({DEFAULT_SERVER}, {config.workers} x {config.threads})",
            str(config.connections),
            f"{tc.rps:,.0f}",
            tc.latency(),
            f"{median(tc.cpu_us):.0f}",
            f"{prep.mean_bytes:,.0f}",
            "1.00",
            str(tc.errors),
        ]
    )
    if girder.side is None:
        return
    gr = results["girder"]
    ratios = round_ratios(tc, gr)
    ratio = median(ratios)
    section.rows.append(
        [
            "Girder 3.2 + girder-large-image (CherryPy, 100 threads)",
            str(config.connections),
            f"{gr.rps:,.0f}",
            gr.latency(),
            f"{median(gr.cpu_us):.0f}",
            f"{girder.mean_bytes:,.0f}",
            f"**{ratio:.2f}** (range {min(ratios):.2f} - {max(ratios):.2f})",
            str(gr.errors),
        ]
    )
    section.notes.insert(
        0,
        f"Goal tilecast >= 3x Girder: {ratio:.2f}, " + ("met" if ratio >= 3 else "NOT met") + ".",
    )
    section.notes.append(
        "Girder's HTTP server (CherryPy's cheroot) keeps at most 10 idle keep-alive "
        "connections (`keep_alive_conn_limit`, not changed by Girder) and closes the others "
        "after each response, so wrk reconnects on those: how Girder as shipped serves "
        f"{config.connections} clients (section 1's accepted-connections note counts them)."
    )
    section.notes.append(
        f"{girder.identical} of {len(prep.paths)} Girder tiles are byte-identical to "
        "tilecast's (large_image re-encodes what it does not pass through; the sizes differ "
        "accordingly)."
    )


def beside_tilecast_rps(section: Section) -> float:
    return float(section.rows[0][2].replace(",", "")) if section.rows else float("nan")


def add_redis_row(
    section: Section, bench: RedisBench, connections: int, mean_bytes: float, tilecast_rps: float
) -> None:
    section.rows.append(
        [
            "redis-benchmark GET (the storage limit)",
            str(connections),
            f"{bench.rps:,.0f}",
            f"{bench.p50_ms:.2f} / {bench.p99_ms:.2f}",
            "-",
            f"{round(mean_bytes):,}",
            f"{tilecast_rps / bench.rps:.2f}",
            "0",
        ]
    )
    command = bench.command.replace(shutil.which("redis-benchmark") or "", "redis-benchmark")
    section.notes.append(f"redis-benchmark command: `{command}` (the GET line).")


def mixed_section() -> Section:
    return Section(
        title="1c. Hits while requests wait for renders",
        measures=(
            "Whether requests that wait for a render starve cache hits. `tilecast api` with "
            f"its default shape ({MIXED_WORKERS} processes x {MIXED_THREADS} threads) under "
            f"each server; wrk ({MIXED_CONNECTIONS} connections) asks warm tiles alone, then "
            f"again while {MIXED_WAITERS} clients each keep one request waiting for a tile "
            "that no worker renders (the worker is stopped; each such request waits for the "
            f"render timeout, {MIXED_RENDER_TIMEOUT:g} s here, answers 504, and the client "
            "asks the next cold tile; the interactive queue's backpressure bound is lifted "
            "so that no wait ends early in a 503). A server that ran waiting requests on the "
            "threads that hits need would lose throughput here or time out hits (wrk gives "
            "up on a request after 2 s: an error). Rounds alternate alone / beside, each "
            "beside phase followed by a pause of the render timeout so that the next alone "
            "phase starts with no request waiting. req/s and hit p99 are medians over "
            "rounds, the ratio the median of the per-round ratios. *requests waiting*: the waiting "
            "clients' requests outstanding for more than a second when wrk ended (median "
            "over rounds); *answers*: what the others got meanwhile (a 503 "
            "`too_many_waiting` when the process the connection landed on already held "
            "`TILECAST_MAX_WAITING` waits: the servers' processes do not share connections "
            "evenly; such a client asks again after 0.5 s). *server RSS*: the api "
            "processes' resident memory in the first round, after the hits alone (no "
            "request has waited yet) and during the beside phase: the difference is what "
            "the waiting requests and their threads cost (threads stay after a wait, so "
            "later rounds start higher)."
        ),
        headers=[
            "server",
            "hit req/s alone",
            f"hit req/s beside {MIXED_WAITERS} waiting requests",
            "ratio (range over rounds)",
            "hit p99 ms alone / beside",
            "hit p99 range ms alone / beside",
            "hit errors",
            "requests waiting when the hit load ended",
            "waiting requests' answers during the hit load",
            "server RSS MiB before any wait / beside, round 1",
        ],
    )


def add_mixed_row(section: Section, server: str, result: MixedResult) -> None:
    ratios = round_ratios(result.mixed, result.alone)
    alone, mixed = p99_ms(result.alone), p99_ms(result.mixed)
    answers = ", ".join(f"{n} x {status}" for status, n in sorted(result.waiters.answers.items()))
    section.rows.append(
        [
            server,
            f"{result.alone.rps:,.0f}",
            f"{result.mixed.rps:,.0f}",
            f"**{median(ratios):.2f}** ({min(ratios):.2f} - {max(ratios):.2f})",
            f"{median(alone):.1f} / **{median(mixed):.1f}**",
            f"{min(alone):.0f} - {max(alone):.0f} / {min(mixed):.0f} - {max(mixed):.0f}",
            str(result.alone.errors + result.mixed.errors),
            f"{median(result.waiters.waiting):.0f}",
            answers or "none (all still waiting)",
            f"{result.waiters.rss_alone_mib[0]:.0f} / {result.waiters.rss_mib[0]:.0f}",
        ]
    )


def p99_ms(side: SideResult) -> list[float]:
    return [r.latency_us["p99"] / 1000 for r in side.rounds]


def count_identical(api_port: int, paths: Sequence[str], girder: GirderSide) -> None:
    ours = fetch_all(api_port, paths)
    girder.identical = sum(1 for a, b in zip(ours, girder.bodies, strict=True) if a.body == b)


def check_same_bytes(api_port: int, bare_port: int, paths: Sequence[str]) -> None:
    ours = fetch_all(api_port, paths)
    theirs = fetch_all(bare_port, paths)
    for path, a, b in zip(paths, ours, theirs, strict=True):
        if a.status != 200 or b.status != 200 or a.body != b.body:
            raise BenchError(
                f"{path}: tilecast {a.status} ({len(a.body)} bytes) vs bare {b.status} "
                f"({len(b.body)} bytes): not the same answer"
            )
        for header in ("content-type", "cache-control", "etag"):
            if a.headers.get(header) != b.headers.get(header):
                raise BenchError(
                    f"{path}: header {header} differs: {a.headers.get(header)!r} vs "
                    f"{b.headers.get(header)!r}"
                )
