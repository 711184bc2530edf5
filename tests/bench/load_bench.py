"""Benchmark "load": many simulated viewers at once against a cold ``tilecast up``-style stack.

For each user count a fresh deployment (tests/bench/load_stack.py: own redis-server,
``tilecast api`` with its default server, one ``tilecast worker`` with its default
concurrency; caches cold) serves the simulated viewers of tests/bench/load_viewer.py,
sent by the asyncio load generator of tests/bench/load_client.py, over the eight images
of tests/bench/load_images.py, for a fixed time. The run fails -- loudly, with the table
-- when any request failed or when any distinct tile was rendered other than exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench import harness
from tests.bench.harness import BenchError, Processes
from tests.bench.load_client import CACHE_HEADER, CONNECTIONS_PER_VIEWER, LoadResult, run_load
from tests.bench.load_images import LOAD_IMAGES, load_image_paths
from tests.bench.load_stack import settled_counters, start_load_stack
from tests.bench.load_viewer import ViewerConfig
from tests.bench.report import Section, ms
from tilecast.common import counters

USERS = (8, 32, 128)
QUICK_USERS = (8, 32)
SEED = 1


@dataclass
class LoadRow:
    result: LoadResult
    counts: dict[str, int]  # tc:stats once settled

    @property
    def renders(self) -> int:
        return self.counts.get(counters.TILES_RENDERED, 0)

    @property
    def distinct(self) -> int:
        return len(self.result.distinct_tiles)

    @property
    def renders_per_tile(self) -> float:
        return self.renders / self.distinct if self.distinct else float("nan")

    @property
    def source_cache_hit_rate(self) -> float | None:
        return source_cache_hit_rate(self.counts)

    def problems(self) -> list[str]:
        r = self.result
        found = []
        if r.errors:
            found.append(f"{r.users} users: {r.errors} failed requests, e.g. {r.error_messages}")
        if self.renders != self.distinct:
            found.append(
                f"{r.users} users: {self.renders} tiles rendered for {self.distinct} distinct "
                "tiles asked (each must be rendered exactly once)"
            )
        if r.unclassified:
            found.append(
                f"{r.users} users: {r.unclassified} tile answers without the {CACHE_HEADER} "
                "header: hits and misses cannot be told apart"
            )
        if not r.tile_requests:
            found.append(f"{r.users} users: no tile was answered")
        return found


def source_cache_hit_rate(counts: dict[str, int]) -> float | None:
    hits = counts.get(counters.SOURCE_CACHE_HITS)
    misses = counts.get(counters.SOURCE_CACHE_MISSES)
    if hits is None and misses is None:
        return None
    total = (hits or 0) + (misses or 0)
    return (hits or 0) / total if total else None


def run_one(
    ctx: harness.BenchContext, users: int, duration: float, config: ViewerConfig
) -> LoadRow:
    images = load_image_paths(ctx)
    with Processes(ctx.scratch / f"load-{users}") as procs:
        # Prefetch off: this section checks that every tile asked is rendered exactly
        # once, which prefetch renders (tiles nobody may ask for) would blur; section 13
        # measures prefetch.
        stack = start_load_stack(procs, [ctx.image_dir], images, settings={"prefetch": 0})
        before = stack.counters()
        if before.get(counters.TILES_RENDERED, 0):
            raise BenchError(f"the stack is not cold: {before}")
        result = run_load(stack.target(), users, duration, seed=SEED, config=config)
        counts = settled_counters(stack, len(result.distinct_tiles))
        stack.check_alive()
    return LoadRow(result, counts)


def percentiles(values: Sequence[float]) -> str:
    from tests.bench.report import percentile

    if not values:
        return "-"
    return " / ".join(ms(percentile(values, q)) for q in (50, 95, 99))


def row_cells(row: LoadRow) -> list[str]:
    r = row.result
    rate = row.source_cache_hit_rate
    return [
        str(r.users),
        f"{r.requests:,}",
        f"{r.requests_per_second:,.0f}",
        f"{r.hit_ratio:.3f}",
        percentiles(r.hit_seconds),
        percentiles(r.miss_seconds),
        f"{row.distinct:,}",
        f"**{row.renders_per_tile:.2f}**",
        "n/a" if rate is None else f"{rate:.3f}",
        f"**{r.errors}**",
    ]


def run(
    ctx: harness.BenchContext,
    *,
    users: Sequence[int] = USERS,
    duration: float = 60.0,
    config: ViewerConfig | None = None,
) -> Section:
    config = config or ViewerConfig()
    section = Section(
        title="5. Many viewers at once: simulated OpenSeadragon users on a cold stack",
        measures=(
            f"Simulated viewers (tests/bench/load_viewer.py) for {duration:.0f} s per row, each "
            "row on a fresh, cold deployment: its own redis-server, `tilecast api` with its "
            "default server, processes and threads, and one `tilecast worker` with its default "
            "concurrency (as `tilecast up` runs them, but with prefetch off: every tile asked "
            "must be rendered exactly once here, and section 13 measures prefetch). Each "
            "viewer opens an image (metadata "
            f"request), shows it whole in a {config.viewport_width}x{config.viewport_height} "
            "viewport, then pans (a fraction of the viewport, keeping a heading) or zooms in or "
            "out a level, with a think time of "
            f"{config.think_min:g}-{config.think_max:g} s between steps; every step asks for "
            "the tiles of the view at every level up to the target level, coarse levels first, "
            f"nearest the centre first, over at most {CONNECTIONS_PER_VIEWER} keep-alive "
            "connections per viewer (a browser's limit per host), never asking twice for a "
            "tile it has (the browser cache). After "
            f"{config.steps_min}-{config.steps_max} steps it opens another image. "
            f"{len(LOAD_IMAGES)} images "
            f"({', '.join(i.label for i in LOAD_IMAGES)}), picked with Zipf popularity "
            f"(exponent {config.zipf_exponent:g}: several viewers share images), seed {SEED}. "
            "The generator is one asyncio process (aiohttp) on the same 2 cores as the "
            f"servers. Hit or miss is the api's `{CACHE_HEADER}` header per answer; a miss "
            "includes waiting on another viewer's render of the same tile. Renders per "
            "distinct tile: the workers' `tiles_rendered` over the distinct tile URLs asked "
            "(must be 1.00); source-cache hit rate: the workers' source-cache lookups that "
            "found the file open. Latencies in ms, p50 / p95 / p99."
        ),
        headers=[
            "users",
            "requests",
            "req/s",
            "tile hit ratio",
            "hit ms p50 / p95 / p99",
            "miss ms p50 / p95 / p99",
            "distinct tiles",
            "renders per distinct tile",
            "source-cache hit rate",
            "errors",
        ],
    )
    rows: list[LoadRow] = []
    for count in users:
        print(f"  load: {count} users for {duration:.0f} s", flush=True)
        row = run_one(ctx, count, duration, config)
        rows.append(row)
        r = row.result
        print(
            f"  load: {count} users: {r.requests} requests, {r.requests_per_second:.0f} req/s, "
            f"hit ratio {r.hit_ratio:.3f}, renders/distinct {row.renders}/{row.distinct}, "
            f"errors {r.errors}",
            flush=True,
        )
        section.rows.append(row_cells(row))
    for row in rows:
        r = row.result
        api_hits = row.counts.get(counters.API_TILE_HITS, 0)
        api_misses = row.counts.get(counters.API_TILE_MISSES, 0)
        section.notes.append(
            f"{r.users} users: {r.elapsed:.1f} s until the last answer, {r.opens} image opens, "
            f"{r.steps} steps, {r.tile_requests / max(1, r.steps):.1f} new tiles per step, "
            f"{r.bytes_received / 1e6:.1f} MB received, the load generator used "
            f"{r.client_cores:.2f} of a core; the api's own counters: "
            f"{api_hits:,} hits, {api_misses:,} misses; source cache: "
            f"{row.counts.get(counters.SOURCE_CACHE_HITS, 0):,} hits, "
            f"{row.counts.get(counters.SOURCE_CACHE_MISSES, 0):,} misses."
        )
    problems = [p for row in rows for p in row.problems()]
    if problems:
        raise BenchError(
            "load test failed:\n- " + "\n- ".join(problems) + "\n\n" + section.markdown()
        )
    return section
