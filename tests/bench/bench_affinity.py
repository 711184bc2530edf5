"""Benchmark "affinity": the workers' source-cache hit rate with source affinity and without.

Four worker nodes (``tilecast worker --queues interactive --concurrency 1``: four
Celery workers of one process each, as four small hosts would be), one api, a cold
Redis; the simulated viewers of the load test (tests/bench/load_viewer.py, the same
seed) over the eight load-test images. *With affinity* the api sends a source's tiles
to the node that rendezvous hashing picks (its own queue, spilling to the shared queue
when that queue is full); *without* (``TILECAST_AFFINITY_QUEUE_DEPTH=0``) every tile
goes to the shared queue and whichever node is free renders it. Each run starts cold
(fresh Redis, fresh workers).

The source cache matters when the images in use do not all fit one worker's cache, so
the first pair of rows bounds each worker's source cache to ``TIGHT_IMAGES`` images
(``TILECAST_SOURCE_CACHE_COUNT``: an open image is an unstyled and a styled entry) --
the four caches together hold the eight images with room to spare, one alone does not;
the second pair keeps the default bounds, under which every worker can hold all eight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.bench import harness
from tests.bench.harness import BenchError, Processes
from tests.bench.load_bench import SEED, percentiles, source_cache_hit_rate
from tests.bench.load_client import LoadResult, run_load
from tests.bench.load_images import LOAD_IMAGES, load_image_paths
from tests.bench.load_stack import LoadStack, settled_counters, start_load_stack
from tests.bench.load_viewer import ViewerConfig
from tests.bench.report import Section
from tilecast.common import counters
from tilecast.common.settings import Settings

WORKERS = 4
TIGHT_IMAGES = 3  # open images per worker in the bounded rows
ENTRIES_PER_IMAGE = 2  # the unstyled source and the one styled (default style) entry
USERS = 16
GOAL = 0.9


@dataclass(frozen=True)
class Mode:
    label: str
    affinity: bool
    bounded: bool
    queue_depth: int | None = None  # TILECAST_AFFINITY_QUEUE_DEPTH when not the default

    def settings(self) -> dict[str, Any]:
        # Interactive renders only: prefetch would queue bulk tasks nobody consumes here.
        values: dict[str, Any] = {"prefetch": 0}
        if not self.affinity:
            values["affinity_queue_depth"] = 0
        elif self.queue_depth is not None:
            values["affinity_queue_depth"] = self.queue_depth
        if self.bounded:
            values["source_cache_count"] = TIGHT_IMAGES * ENTRIES_PER_IMAGE
        return values


DEEP_QUEUE = 16
MODES = (
    Mode("with affinity", affinity=True, bounded=True),
    Mode("without affinity", affinity=False, bounded=True),
    # How much the spill-over to the shared queue costs: a deeper own queue per worker.
    Mode(
        f"with affinity, `TILECAST_AFFINITY_QUEUE_DEPTH={DEEP_QUEUE}`",
        affinity=True,
        bounded=True,
        queue_depth=DEEP_QUEUE,
    ),
    Mode("with affinity", affinity=True, bounded=False),
    Mode("without affinity", affinity=False, bounded=False),
)


@dataclass
class AffinityRow:
    mode: Mode
    result: LoadResult
    counts: dict[str, int]
    routed: dict[str, int]  # interactive tasks received, by "own" / "shared" queue
    per_node: list[int]  # tasks each node received

    @property
    def hit_rate(self) -> float | None:
        return source_cache_hit_rate(self.counts)


def routed_tasks(stack: LoadStack) -> tuple[dict[str, int], list[int]]:
    """Interactive tasks the live nodes received, by the queue they came from (the
    nodes' heartbeat records, common/workers_live.py), and per node."""
    from tilecast.common.routing import is_affinity_queue
    from tilecast.common.workers_live import read_workers

    routed = {"own": 0, "shared": 0}
    per_node = []
    for info in read_workers(stack.redis.client()):
        total = 0
        for queue, count in info.received.items():
            if is_affinity_queue(queue):
                routed["own"] += count
            elif queue == "interactive":
                routed["shared"] += count
            else:
                continue
            total += count
        per_node.append(total)
    return routed, sorted(per_node, reverse=True)


def run_mode(
    ctx: harness.BenchContext, mode: Mode, users: int, duration: float, config: ViewerConfig
) -> AffinityRow:
    images = load_image_paths(ctx)
    routing = f"on{mode.queue_depth or ''}" if mode.affinity else "off"
    name = f"affinity-{routing}-{'tight' if mode.bounded else 'default'}"
    with Processes(ctx.scratch / name) as procs:
        stack = start_load_stack(
            procs,
            [ctx.image_dir],
            images,
            workers=WORKERS,
            worker_concurrency=1,
            # Interactive nodes only: nothing in this benchmark uses the bulk pool.
            worker_queues="interactive",
            settings=mode.settings(),
        )
        result = run_load(stack.target(), users, duration, seed=SEED, config=config)
        counts = settled_counters(stack, len(result.distinct_tiles))
        routed, per_node = routed_tasks(stack)
        stack.check_alive()
    if len(per_node) != WORKERS:
        raise BenchError(f"{mode.label}: {len(per_node)} live worker nodes, {WORKERS} started")
    return AffinityRow(mode, result, counts, routed, per_node)


def run(
    ctx: harness.BenchContext,
    *,
    users: int = USERS,
    duration: float = 45.0,
    modes: Sequence[Mode] = MODES,
    config: ViewerConfig | None = None,
) -> Section:
    config = config or ViewerConfig()
    section = Section(
        title="6. Source affinity: worker source-cache hit rate with and without it",
        measures=(
            f"{WORKERS} worker nodes of one process each "
            "(`tilecast worker --queues interactive --concurrency 1`), "
            f"one `tilecast api`, {users} simulated viewers of the load test (section 5, seed "
            f"{SEED}) for {duration:.0f} s over its {len(LOAD_IMAGES)} images, each run on a "
            "fresh, cold deployment. *With affinity* (the default) a source's tiles go to the "
            "node rendezvous hashing picks, through its own queue, spilling to the shared "
            "queue while that already holds `TILECAST_AFFINITY_QUEUE_DEPTH` tasks per process "
            f"(default {Settings().affinity_queue_depth}); "
            "*without* (`TILECAST_AFFINITY_QUEUE_DEPTH=0`) every tile goes to the shared queue. "
            "Source-cache hit rate: the workers' source-cache lookups (one per render) that "
            "found the image open, over all lookups. *Source cache per worker*: "
            f"`TILECAST_SOURCE_CACHE_COUNT={TIGHT_IMAGES * ENTRIES_PER_IMAGE}` holds "
            f"{TIGHT_IMAGES} open images (an unstyled and a styled entry each), so the "
            f"{WORKERS} caches together hold all {len(LOAD_IMAGES)} images but one alone does "
            "not; the default bounds hold all of them in every worker. The third row repeats "
            f"the first with deeper own queues (`TILECAST_AFFINITY_QUEUE_DEPTH={DEEP_QUEUE}`): "
            f"what the spill-over costs. Goal: >= {GOAL} with affinity."
        ),
        headers=[
            "source cache per worker",
            "routing",
            "source-cache hit rate",
            "lookups (hits / misses)",
            "renders via own queue / shared",
            "renders per node",
            "tile req/s",
            "miss ms p50 / p95 / p99",
            "renders per distinct tile",
            "errors",
        ],
    )
    rows: list[AffinityRow] = []
    for mode in modes:
        bound = f"{TIGHT_IMAGES} images" if mode.bounded else "default (all fit)"
        print(f"  affinity: {mode.label}, source cache {bound}", flush=True)
        row = run_mode(ctx, mode, users, duration, config)
        rows.append(row)
        r = row.result
        hits = row.counts.get(counters.SOURCE_CACHE_HITS, 0)
        misses = row.counts.get(counters.SOURCE_CACHE_MISSES, 0)
        renders = row.counts.get(counters.TILES_RENDERED, 0)
        distinct = len(r.distinct_tiles)
        rate = row.hit_rate
        shown_rate = "n/a" if rate is None else f"{rate:.3f}"
        print(f"  affinity: source-cache hit rate {shown_rate}", flush=True)
        section.rows.append(
            [
                bound,
                mode.label,
                f"**{shown_rate}**",
                f"{hits:,} / {misses:,}",
                f"{row.routed['own']:,} / {row.routed['shared']:,}",
                " / ".join(f"{n:,}" for n in row.per_node),
                f"{r.tile_requests / r.elapsed:,.0f}" if r.elapsed else "-",
                percentiles(r.miss_seconds),
                f"{renders / distinct:.2f}" if distinct else "-",
                str(r.errors),
            ]
        )
    problems = []
    for row in rows:
        if row.result.errors:
            problems.append(f"{row.mode.label}: {row.result.errors} failed requests")
        renders = row.counts.get(counters.TILES_RENDERED, 0)
        if renders != len(row.result.distinct_tiles):
            problems.append(
                f"{row.mode.label}: {renders} renders for {len(row.result.distinct_tiles)} "
                "distinct tiles (each must be rendered exactly once)"
            )
        if row.hit_rate is None:
            problems.append(f"{row.mode.label}: the workers counted no source-cache lookups")
    if problems:
        raise BenchError(
            "affinity benchmark failed:\n- " + "\n- ".join(problems) + "\n\n" + section.markdown()
        )
    on = [
        r.hit_rate
        for r in rows
        if r.mode.affinity and r.mode.bounded and r.mode.queue_depth is None and r.hit_rate
    ]
    if on:
        met = "met" if min(on) >= GOAL else "NOT met"
        section.notes.append(
            f"Goal >= {GOAL} with affinity (default settings, bounded caches): {met} "
            f"({min(on):.3f})."
        )
    section.notes.append(
        "Renders via own queue / shared: the interactive tasks the nodes received from their "
        "own queue and from the shared one (their heartbeat records); with affinity the "
        "shared ones are spill-over, rendered by whichever node is free, which may not have "
        "the image open. Renders per node: the same tasks per node, largest first (rendezvous "
        "hashing gives each node whole images, so the most popular images' nodes work most)."
    )
    return section
