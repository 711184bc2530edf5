"""Benchmark "fullview": time to full view of replayed viewer sessions, prefetch off and on.

The same sessions (tests/bench/browse_model.py, seeded) are replayed by ``viewers``
concurrent viewers (tests/bench/replay_client.py) against a fresh, cold
``tilecast up``-style stack per mode (tests/bench/load_stack.py: its own redis-server,
``tilecast api`` with its default server, one ``tilecast worker`` with an interactive
and a niced bulk node), once with ``TILECAST_PREFETCH=0`` and once with ``=1``. Per
view: the time to full view and the tiles it asked; per run: the tiles the workers
rendered (``tiles_rendered``, interactive and bulk, prefetch included), counted once
the queues drained, so renders per view include every prefetch render, used or not.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.bench import harness
from tests.bench.browse_model import PAN, ZOOM_IN, BrowseConfig, Session, sessions
from tests.bench.harness import BenchError, Processes
from tests.bench.load_client import CONNECTIONS_PER_VIEWER
from tests.bench.load_images import LOAD_IMAGES, load_image_paths
from tests.bench.load_stack import settled_counters, start_load_stack
from tests.bench.load_viewer import ImageGeometry
from tests.bench.replay_client import ReplayResult, replay
from tests.bench.report import Section, ms, percentile
from tilecast.common import counters

VIEWERS = 32
VIEWS = 24
QUICK_VIEWS = 10
IMAGES = 4  # the first four of the load test's images (two pyramids, a single-level one)
SEED = 7
MODES = {"off": 0, "on": 1}
# Runs in the order off, on, on, off, ... (ABBA): on a machine shared with other work,
# a drift in its load weighs on both modes alike.
ROUNDS = 2
QUICK_ROUNDS = 1
# The goal (issue 20): median time to full view >= 30% lower at <= 1.5x the renders.
GOAL_GAIN = 0.30
GOAL_RENDERS = 1.5


@dataclass
class ModeRow:
    mode: str
    result: ReplayResult
    counts: dict[str, int]
    # 1-minute load average before and after the replay (the machine may be shared).
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def renders(self) -> int:
        return self.counts.get(counters.TILES_RENDERED, 0)

    @property
    def views(self) -> int:
        return len(self.result.views)

    def seconds(self, action: str | None = None) -> list[float]:
        return [v.seconds for v in self.result.views if action is None or v.action == action]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds()) if self.views else float("nan")


def run_mode(
    ctx: harness.BenchContext,
    mode: str,
    prefetch: int,
    plan: Callable[[Sequence[ImageGeometry]], list[Session]],
) -> ModeRow:
    """One cold stack with ``TILECAST_PREFETCH=prefetch``, replaying the sessions
    ``plan`` makes for the images' geometry as the api describes them."""
    images = load_image_paths(ctx, IMAGES)
    with Processes(ctx.scratch / f"fullview-{mode}") as procs:
        stack = start_load_stack(procs, [ctx.image_dir], images, settings={"prefetch": prefetch})
        if stack.counters().get(counters.TILES_RENDERED, 0):
            raise BenchError("the stack is not cold")
        load_before = os.getloadavg()[0]
        result = replay(stack.target(), plan(stack.geometries))
        load_after = os.getloadavg()[0]
        # Prefetch tasks still queued render (or expire) after the last view: wait for
        # them, every render counts.
        counts = settled_counters(stack, len(result.distinct_tiles), timeout=60.0)
        stack.check_alive()
    return ModeRow(mode, result, counts, (load_before, load_after))


def pooled(runs: Sequence[ModeRow], mode: str) -> ModeRow:
    """The runs of one mode as one: their views together, their counters summed."""
    result = ReplayResult(viewers=runs[0].result.viewers)
    counts: dict[str, int] = {}
    for run in runs:
        r = run.result
        result.views += r.views
        result.cached_views += r.cached_views
        result.errors += r.errors
        result.error_messages += r.error_messages
        result.elapsed += r.elapsed
        result.client_cpu += r.client_cpu
        for name, value in run.counts.items():
            counts[name] = counts.get(name, 0) + value
    return ModeRow(mode, result, counts)


def _p(values: Sequence[float], q: float) -> str:
    return ms(percentile(values, q)) if values else "-"


def run(
    ctx: harness.BenchContext,
    *,
    viewers: int = VIEWERS,
    views: int = VIEWS,
    rounds: int = ROUNDS,
    config: BrowseConfig | None = None,
) -> Section:
    config = config or BrowseConfig()
    specs = LOAD_IMAGES[:IMAGES]
    made: dict[tuple[ImageGeometry, ...], list[Session]] = {}

    def plan(geometries: Sequence[ImageGeometry]) -> list[Session]:
        # Every mode replays the same sessions: one plan per geometry (one, in practice).
        key = tuple(geometries)
        if key not in made:
            made[key] = sessions(SEED, geometries, viewers, views, config)
        return made[key]

    order = [
        mode for n in range(rounds) for mode in (("off", "on") if n % 2 == 0 else ("on", "off"))
    ]
    runs: list[ModeRow] = []
    for n, mode in enumerate(order, 1):
        print(
            f"  fullview: run {n}/{len(order)}: {viewers} viewers x {views} views, prefetch {mode}",
            flush=True,
        )
        row = run_mode(ctx, mode, MODES[mode], plan)
        runs.append(row)
        print(
            f"  fullview: prefetch {mode}: median {row.median * 1000:.0f} ms, "
            f"p95 {percentile(row.seconds(), 95) * 1000:.0f} ms, {row.renders} renders for "
            f"{row.views} views, errors {row.result.errors}",
            flush=True,
        )
    rows = [pooled([r for r in runs if r.mode == mode], mode) for mode in MODES]
    section = Section(
        title="13. Time to full view: replayed viewer sessions, prefetch off and on",
        measures=(
            f"{viewers} concurrent viewers replay the same seeded sessions (seed {SEED}, "
            f"{views} views each; tests/bench/browse_model.py) against a fresh, cold stack per "
            "row: its own redis-server, `tilecast api` with its default server, processes and "
            "threads, one `tilecast worker` (an interactive and a niced bulk node, default "
            "concurrency), as `tilecast up` runs them; the row differs only in "
            f"`TILECAST_PREFETCH`; {len(order)} runs in the order {', '.join(order)} (on a "
            "shared machine a drift in load weighs on both alike), each mode's views pooled. "
            "A session opens one of "
            f"{IMAGES} images ({', '.join(s.label for s in specs)}; Zipf popularity), shows it "
            f"whole in a {config.viewport_width}x{config.viewport_height} viewport, dives "
            f"{config.dive_min}-{config.dive_max} levels to a region of interest, pans "
            f"{config.pans_min}-{config.pans_max} times at that level ({config.pan_min:g}-"
            f"{config.pan_max:g} of the viewport along a heading drifting "
            f"{config.turn_sigma:g} rad per pan; a pan is a closer look, zoom in and out "
            f"again, with probability {config.p_detail:g}), goes home and dives elsewhere; "
            f"{config.think_min:g}-{config.think_max:g} s between views. A view asks for "
            "OpenSeadragon's tiles (every level up to the target, coarse first, centre "
            f"outwards, {CONNECTIONS_PER_VIEWER} connections per viewer), less the ones the "
            "viewer has. *Time to full view*: from landing on the view to its last tile; "
            "views needing no new tile are left out. Renders: the workers' "
            "`tiles_rendered` once the queues drained (prefetch renders included, used or "
            "not) over the views. Times in ms."
        ),
        headers=[
            "prefetch",
            "views",
            "time to full view p50 / p95",
            "pan p50 / p95",
            "zoom in p50 / p95",
            "tiles asked per view",
            "misses per view",
            "renders",
            "renders per view",
            "errors",
        ],
    )
    for row in rows:
        r = row.result
        pans, zooms = row.seconds(PAN), row.seconds(ZOOM_IN)
        section.rows.append(
            [
                row.mode,
                f"{row.views:,}",
                f"**{_p(row.seconds(), 50)}** / {_p(row.seconds(), 95)}",
                f"{_p(pans, 50)} / {_p(pans, 95)}",
                f"{_p(zooms, 50)} / {_p(zooms, 95)}",
                f"{r.tiles / max(1, row.views):.1f}",
                f"{r.misses / max(1, row.views):.1f}",
                f"{row.renders:,}",
                f"**{row.renders / max(1, row.views):.1f}**",
                f"**{r.errors}**",
            ]
        )
    off, on = rows[0], rows[-1]
    gain = 1 - on.median / off.median if off.median else float("nan")
    ratio = on.renders / off.renders if off.renders else float("nan")
    met = gain >= GOAL_GAIN and ratio <= GOAL_RENDERS
    section.notes.append(
        f"Prefetch on: median time to full view {gain:.0%} lower than off "
        f"({on.median * 1000:.0f} vs {off.median * 1000:.0f} ms) at {ratio:.2f}x the renders "
        f"({on.renders:,} vs {off.renders:,}); goal >= {GOAL_GAIN:.0%} lower at <= "
        f"{GOAL_RENDERS:g}x: **{'met' if met else 'not met'}**."
    )
    section.notes.append(
        "The load averages below are the whole machine's: a machine shared with other work "
        "makes absolute times slower and noisier; the ABBA order spreads that over both modes."
    )
    for n, row in enumerate(runs, 1):
        c = row.counts
        section.notes.append(
            f"run {n}, prefetch {row.mode}: median {row.median * 1000:.0f} ms, p95 "
            f"{percentile(row.seconds(), 95) * 1000:.0f} ms, {row.renders:,} renders; "
            f"{row.result.elapsed:.1f} s, {row.result.cached_views} views "
            f"needing no new tile, {len(row.result.distinct_tiles):,} distinct tiles asked; "
            f"prefetch sent {c.get(counters.PREFETCH_TILES, 0):,} tiles in "
            f"{c.get(counters.PREFETCH_TASKS, 0):,} tasks, the bulk pool rendered "
            f"{c.get(counters.PREFETCH_RENDERED, 0):,} of them and dropped "
            f"{c.get(counters.PREFETCH_DROPPED, 0):,} (expired, or claimed or cached "
            f"meanwhile); 1-minute load average {row.load[0]:.1f} before the replay, "
            f"{row.load[1]:.1f} after; the load generator used "
            f"{row.result.client_cpu / max(row.result.elapsed, 1e-9):.2f} of a core."
        )
    problems = [
        f"prefetch {row.mode}: {row.result.errors} failed requests, e.g. "
        f"{row.result.error_messages}"
        for row in runs
        if row.result.errors
    ]
    if problems:
        raise BenchError(
            "fullview failed:\n- " + "\n- ".join(problems) + "\n\n" + section.markdown()
        )
    return section
