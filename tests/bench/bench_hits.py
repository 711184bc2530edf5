"""Benchmark 1: cache-hit throughput of ``tilecast api`` against a bare Flask+Redis app.

Both servers run at once under the same gunicorn configuration (gthread, same workers and
threads), read the same Redis (started here on a free port) and return the same bytes
for the same URLs; the tiles were rendered and cached through tilecast itself first.
The same wrk command loads each in turn, over a spread of distinct tile URLs, alternating
which side goes first, several rounds; the report gives the median of each side and the
median of the per-round ratios.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import harness
from tests.bench.harness import HOST, BenchError, Processes
from tests.bench.report import Section, median
from tests.bench.wrk import WrkResult, run_wrk
from tilecast import procs as tc_procs


@dataclass(frozen=True)
class HitConfig:
    """The settings of one comparison (the same for both sides)."""

    workers: int
    threads: int
    connections: int


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
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
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


@dataclass
class SideResult:
    rounds: list[WrkResult]
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, each round

    @property
    def rps(self) -> float:
        return median([r.rps for r in self.rounds])

    def median_round(self) -> WrkResult:
        return sorted(self.rounds, key=lambda r: r.rps)[len(self.rounds) // 2]


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


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of a gunicorn master and its live workers so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in {master_pid, *tc_procs.descendants(master_pid)}:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def balanced_run(
    wrk: str, port: int, master_pid: int, paths_file: Path, config: HitConfig, seconds: float
) -> tuple[WrkResult, float, int]:
    """One wrk run in which every gunicorn worker process holds some of wrk's keep-alive
    connections; the number of runs thrown away is returned too.

    gunicorn's workers race to accept wrk's connections, all opened at once; now and then
    one worker wins every race and serves all of them while the other idles, which halves
    the throughput of that run whichever app it serves. Such runs measure the accept race,
    not the app: they are repeated (up to 4 times)."""
    discarded = 0
    while True:
        seen: dict[int, int] = {}

        def sample(into: dict[int, int] = seen) -> None:
            time.sleep(min(1.0, seconds / 3))
            into.update(connections_per_process(port) or {})

        sampler = threading.Thread(target=sample)
        cpu_before = server_cpu_seconds(master_pid)
        sampler.start()
        result = run_wrk(wrk, port, paths_file, seconds=seconds, connections=config.connections)
        sampler.join()
        cpu = server_cpu_seconds(master_pid) - cpu_before
        if config.workers == 1 or not seen or len(seen) >= config.workers or discarded >= 4:
            return result, cpu * 1e6 / max(1, result.requests), discarded
        discarded += 1
        print(f"    (run discarded: connections per worker {sorted(seen.values())})", flush=True)


def compare(
    wrk: str,
    ports: dict[str, tuple[int, int]],
    paths_file: Path,
    config: HitConfig,
    *,
    seconds: float,
    rounds: int,
    warmup: float,
) -> tuple[dict[str, SideResult], int]:
    names = list(ports)
    for name in names:  # warm both (connections, imports, Redis pools) before timing
        run_wrk(wrk, ports[name][0], paths_file, seconds=warmup, connections=config.connections)
    results: dict[str, SideResult] = {name: SideResult([]) for name in names}
    discarded = 0
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            port, master = ports[name]
            result, cpu_us, thrown = balanced_run(wrk, port, master, paths_file, config, seconds)
            discarded += thrown
            results[name].rounds.append(result)
            results[name].cpu_us.append(cpu_us)
            print(
                f"  hits {config.workers}x{config.threads} c{config.connections} round {r + 1} "
                f"{name}: {result.rps:,.0f} req/s, server CPU {cpu_us:.0f} us/request, "
                f"errors {result.error_count}",
                flush=True,
            )
    return results, discarded


def run(
    ctx: harness.BenchContext,
    *,
    configs: Sequence[HitConfig],
    seconds: float,
    rounds: int,
    warmup: float,
    levels_below_base: int,
) -> Section:
    with Processes(ctx.scratch / "hits") as procs:
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
        print(f"  hits: warming {len(paths)} tiles through tilecast", flush=True)
        warmed = fetch_all(stack.api_port, paths, concurrency=16)
        bad = [(p, r.status) for p, r in zip(paths, warmed, strict=True) if r.status != 200]
        if bad:
            raise BenchError(f"warming tiles failed for {len(bad)} tiles, e.g. {bad[:3]}")
        # Hits need no worker: stop it so that it takes no CPU from the servers measured.
        assert stack.worker is not None and stack.api is not None
        procs.stop(stack.worker)
        procs.stop(stack.api)
        client = stack.redis.client()
        z0, x0, y0 = tiles[0]
        prefix, suffix = key_template(client, source_id, z0, x0, y0)
        cache_control = warmed[0].headers.get("cache-control", "")
        sizes = [len(r.body) for r in warmed]
        paths_file = ctx.scratch / "hits" / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n")

        section = Section(
            title="1. Cache-hit throughput: tilecast api vs a bare Flask+Redis app",
            measures=(
                "Requests per second answering tiles that are already in Redis. "
                "`tilecast api` (its whole hit path: parse and validate the request, the "
                "source's generation, the key, one Redis GET, ETag and caching headers) "
                "against `tests/bench/bare_app.py` (one Flask route, one Redis GET of the key "
                "tilecast wrote, the same bytes and headers), both under the same gunicorn "
                "gthread command line, the same Redis, the same wrk command "
                f"(1 thread, spread over {len(paths)} distinct tile URLs of levels "
                f"z={top - levels_below_base}..0 of the {meta['sizeX']}x{meta['sizeY']} "
                f"pyramidal JPEG TIFF, mean tile {sum(sizes) / len(sizes) / 1024:.1f} KiB), "
                f"{rounds} rounds of {seconds:.0f} s per side back to back, alternating which "
                "side goes first. req/s are the medians over rounds; the ratio is the median "
                "of the per-round ratios (each round's two runs are seconds apart, so they "
                "share the machine's state). wrk, Redis and the server share the machine's "
                "cores. Goal: ratio >= 0.9."
            ),
            headers=[
                "gunicorn workers x threads",
                "wrk connections",
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
        discarded_total = 0
        verdicts: list[str] = []
        for config in configs:
            api, api_port = harness.start_api(
                procs,
                stack.env,
                workers=config.workers,
                threads=config.threads,
                name=f"api-{config.workers}x{config.threads}",
            )
            bare, bare_port = start_bare(
                procs,
                stack.env,
                stack.redis.url,
                prefix,
                suffix,
                cache_control,
                workers=config.workers,
                threads=config.threads,
                name=f"bare-{config.workers}x{config.threads}",
            )
            check_same_bytes(api_port, bare_port, paths)
            results, discarded = compare(
                ctx.wrk,
                {"tilecast": (api_port, api.proc.pid), "bare": (bare_port, bare.proc.pid)},
                paths_file,
                config,
                seconds=seconds,
                rounds=rounds,
                warmup=warmup,
            )
            procs.stop(api)
            procs.stop(bare)
            discarded_total += discarded
            tc, bare_res = results["tilecast"], results["bare"]
            ratios = [
                a.rps / b.rps for a, b in zip(tc.rounds, bare_res.rounds, strict=True) if b.rps
            ]
            tm, bm = tc.median_round(), bare_res.median_round()
            ratio = median(ratios)
            verdicts.append(
                f"{config.workers} x {config.threads}: {ratio:.2f}, "
                + ("met" if ratio >= 0.9 else "NOT met")
            )
            errors = sum(r.error_count for r in tc.rounds + bare_res.rounds)
            section.rows.append(
                [
                    f"{config.workers} x {config.threads}",
                    str(config.connections),
                    f"{tc.rps:,.0f}",
                    f"{bare_res.rps:,.0f}",
                    f"**{ratio:.2f}**",
                    f"{min(ratios):.2f} - {max(ratios):.2f}",
                    f"{median(tc.cpu_us):.0f} / {median(bare_res.cpu_us):.0f}",
                    f"{median(bare_res.cpu_us) / median(tc.cpu_us):.2f}",
                    f"{tm.latency_us['p50'] / 1000:.1f} / {tm.latency_us['p99'] / 1000:.1f}",
                    f"{bm.latency_us['p50'] / 1000:.1f} / {bm.latency_us['p99'] / 1000:.1f}",
                    str(errors),
                ]
            )
        section.notes.insert(0, "Goal ratio >= 0.9 -- " + ", ".join(verdicts) + ".")
        section.notes.append(
            "gunicorn's worker processes race to accept wrk's connections, all opened at once; "
            "now and then one process wins them all and the other idles, halving that run's "
            "throughput whichever app is served. A run where some worker process held none of "
            "the connections (counted with `ss` during the run) is thrown away and repeated: "
            f"{discarded_total} such runs in this benchmark."
        )
        section.notes.append(
            f"wrk command per run: `wrk -t1 -cC -d{seconds:.0f}s --timeout 10s -s "
            "tests/bench/wrk_paths.lua http://127.0.0.1:PORT -- paths.txt` (C = the connections "
            "column; the Lua script cycles through the list of tile paths)."
        )
        section.notes.append(
            "Before timing, every URL was fetched from both servers: identical bodies and "
            "identical `Content-Type`, `ETag` and `Cache-Control` for all of them."
        )
        return section


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
