"""Soak: the many-viewers load test for a long time while worker processes are killed.

    .venv/bin/python -m tests.bench.soak --minutes 30 --kill-every 60

A cold ``tilecast up``-style stack (tests/bench/load_stack.py: its own redis-server,
``tilecast api``, ``--workers`` times ``tilecast worker``) serves the simulated viewers of
tests/bench/load_viewer.py for ``--minutes``. Every ``--kill-every`` seconds one worker
process is SIGKILLed, in turn: a pool process of an interactive node (its node stays up
and replaces it), then a whole ``tilecast worker`` (every process of it, as a crashed
host), which is started again as a supervisor would. At the end the result table --
requests, errors, p99, renders per distinct tile, the RSS of every process at start and
end -- replaces the "Soak" table of docs/RELIABILITY.md (``--output`` to write elsewhere).

Not part of the test suite: a run lasts as long as asked. Exit status 1 when a request
failed (anything but a 200: the load generator counts 503/504 as errors too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import signal
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import harness
from tests.bench.harness import Processes
from tests.bench.load_client import LoadResult, run_load
from tests.bench.load_stack import LoadStack, settled_counters, start_load_stack
from tests.bench.load_viewer import ViewerConfig
from tests.bench.report import ms, percentile
from tilecast import procs
from tilecast.common import counters

DEFAULT_OUTPUT = harness.REPO / "docs" / "RELIABILITY.md"
START_MARK = "<!-- soak:start -->"
END_MARK = "<!-- soak:end -->"
WIDTH, HEIGHT = 16384, 12288  # the benchmark runner's image pair (tests/bench/run.py)


# --- processes and their memory ----------------------------------------------------------


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def roles(stack: LoadStack, redis_pid: int | None) -> dict[str, list[int]]:
    """Role -> pids: redis, the api's processes, and per ``tilecast worker`` its launcher,
    each node's main process and each node's pool."""
    found: dict[str, list[int]] = {}
    if redis_pid:
        found["redis-server"] = [redis_pid]
    api = stack.api.proc.pid
    found["api (all processes)"] = [api, *sorted(procs.descendants(api))]
    for index, child in enumerate(stack.workers):
        name = f"worker {index + 1}"  # a restarted worker keeps its place
        launcher = child.proc.pid
        found[f"{name} launcher"] = [launcher]
        for pid in sorted(procs.descendants(launcher)):
            # Pool processes are forks of their node: same command line, the node's pid
            # as parent.
            match = re.search(r"--queues (\w+)", cmdline(pid))
            if match and parent(pid) == launcher:
                role = match.group(1)
                found[f"{name} {role} node"] = [pid]
                found[f"{name} {role} pool"] = sorted(procs.descendants(pid))
    return found


def memory(stack: LoadStack, redis_pid: int | None) -> dict[str, tuple[int, int]]:
    """Role -> (process count, total RSS in KiB)."""
    return {
        role: (len(pids), sum(rss_kib(pid) for pid in pids))
        for role, pids in roles(stack, redis_pid).items()
    }


def redis_pid_of(port: int) -> int | None:
    """The redis-server listening on ``port`` (started by tilecast.redis_server)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        line = cmdline(int(entry.name))
        if "redis-server" in line and (f"--port {port} " in line or f":{port}" in line):
            return int(entry.name)
    return None


# --- the killer --------------------------------------------------------------------------


@dataclass
class Killer:
    """Every ``every`` seconds, SIGKILL a pool process or a whole worker, in turn."""

    stack: LoadStack
    procs_: Processes
    every: float
    mode: str  # "pool", "node" or "both" (alternating)
    kills: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    # The thread outlives the kills until released: a worker it restarted is asked to
    # die with the thread that started it (PR_SET_PDEATHSIG follows the thread).
    released: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def run(self) -> None:
        count = 0
        while not self.stopping.wait(self.every):
            whole = self.mode == "node" or (self.mode == "both" and count % 2 == 1)
            try:
                self.kills.append(self.kill_worker() if whole else self.kill_pool_process())
            except Exception as exc:  # a kill that failed is reported, the soak goes on
                self.kills.append(f"kill failed: {exc}")
            print(f"  soak: {self.kills[-1]}", flush=True)
            count += 1
        self.released.wait()

    def kill_pool_process(self) -> str:
        stamp = self._stamp()
        pools = [
            (role, pids)
            for role, pids in roles(self.stack, None).items()
            if role.endswith("interactive pool") and pids
        ]
        role, pids = self.rng.choice(pools)
        victim = self.rng.choice(pids)
        os.kill(victim, signal.SIGKILL)
        return f"{stamp} SIGKILL pool process {victim} ({role})"

    def kill_worker(self) -> str:
        stamp = self._stamp()
        index = self.rng.randrange(len(self.stack.workers))
        old = self.stack.workers[index]
        os.killpg(old.proc.pid, signal.SIGKILL)
        old.proc.wait(timeout=30)
        self.procs_.children.remove(old)
        argv = harness.tilecast_argv("worker")
        restarts = sum(1 for kill in self.kills if "restarted" in kill)
        fresh = self.procs_.start(f"worker-{index + 1}-r{restarts + 1}", argv, self.stack.env)
        self.stack.workers[index] = fresh
        return (
            f"{stamp} SIGKILL every process of worker {index + 1} (pid {old.proc.pid}); restarted"
        )

    def _stamp(self) -> str:
        return dt.datetime.now(dt.UTC).strftime("%H:%M:%S")


# --- the report --------------------------------------------------------------------------


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def report(
    args: argparse.Namespace,
    result: LoadResult,
    counts: dict[str, int],
    start: dict[str, tuple[int, int]],
    end: dict[str, tuple[int, int]],
    kills: Sequence[str],
) -> str:
    latencies = result.hit_seconds + result.miss_seconds
    distinct = len(result.distinct_tiles)
    rendered = counts.get(counters.TILES_RENDERED, 0)
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(result.statuses.items()))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Last run: {when}, `python -m tests.bench.soak --minutes {args.minutes:g} "
        f"--kill-every {args.kill_every:g} --users {args.users} --workers {args.workers} "
        f"--kill {args.kill}` on {os.cpu_count()} cores.",
        "",
        "| requests | errors | answers by status | tile p50 / p99 ms | miss p99 ms "
        "| distinct tiles | renders per distinct tile | kills |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {result.requests:,} | **{result.errors}** | {statuses} "
        f"| {ms(percentile(latencies, 50))} / {ms(percentile(latencies, 99))} "
        f"| {ms(percentile(result.miss_seconds, 99)) if result.miss_seconds else '-'} "
        f"| {distinct:,} | {rendered / distinct if distinct else 0:.3f} | {len(kills)} |",
        "",
        "| process | count at start | RSS MiB at start | count at end | RSS MiB at end |",
        "| --- | --- | --- | --- | --- |",
    ]
    for role in sorted(set(start) | set(end)):
        n0, k0 = start.get(role, (0, 0))
        n1, k1 = end.get(role, (0, 0))
        lines.append(f"| {role} | {n0} | {mib(k0)} | {n1} | {mib(k1)} |")
    lines += ["", "Kills:", ""]
    lines += [f"- {kill}" for kill in kills] or ["- none"]
    if result.error_messages:
        lines += ["", "First errors:", ""]
        lines += [f"- `{message[:160]}`" for message in result.error_messages[:5]]
    return "\n".join(lines)


def write_report(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{START_MARK}\n{table}\n{END_MARK}"
    if START_MARK in text and END_MARK in text:
        head, _, rest = text.partition(START_MARK)
        _, _, tail = rest.partition(END_MARK)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    parser.add_argument(
        "--kill", choices=("pool", "node", "both"), default="both", help="what is killed"
    )
    parser.add_argument("--users", type=int, default=16, help="simulated viewers")
    parser.add_argument("--workers", type=int, default=2, help="`tilecast worker` processes")
    parser.add_argument(
        "--image-dir",
        type=Path,
        default=Path.home() / ".cache" / "tilecast-bench",
        help="where the benchmark images are kept (generated on first use)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tilecast.sample import make_demo_images

    images = [p.resolve() for p in make_demo_images(args.image_dir, WIDTH, HEIGHT)]
    scratch = Path(tempfile.mkdtemp(prefix="tilecast-soak-"))
    print(f"soak: logs in {scratch}", flush=True)
    with Processes(scratch) as processes:
        # Prefetch off: renders per distinct tile must stay 1.00 through the kills.
        stack = start_load_stack(
            processes,
            [args.image_dir.resolve()],
            images,
            workers=args.workers,
            settings={"prefetch": 0},
        )
        redis_pid = redis_pid_of(stack.redis.port)
        start = memory(stack, redis_pid)
        killer = Killer(stack, processes, args.kill_every, args.kill)
        thread = threading.Thread(target=killer.run, name="soak-killer", daemon=True)
        thread.start()
        print(f"soak: {args.users} viewers for {args.minutes:g} min", flush=True)
        result = run_load(stack.target(), args.users, args.minutes * 60, config=ViewerConfig())
        killer.stopping.set()
        try:
            counts = settled_counters(stack, len(result.distinct_tiles))
            end = memory(stack, redis_pid)
            stack.check_alive()
        finally:
            killer.released.set()
            thread.join(timeout=60)
    table = report(args, result, counts, start, end, killer.kills)
    print(table, flush=True)
    write_report(args.output, table)
    print(f"soak: the table is in {args.output}", flush=True)
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
