"""Run every benchmark and rewrite docs/BENCHMARKS.md.

    python -m tests.bench.run            # the full run (about 8 minutes on 2 cores)
    python -m tests.bench.run --quick    # a smoke run; writes to the scratch folder instead
    python -m tests.bench.run --only hits,latency

From the repository root, with tilecast and its test extras installed (``pip install -e
'.[test]'``). It installs Debian's ``wrk`` itself when missing (as root or with sudo),
generates its images once into ``--image-dir``, and starts and stops every process it
measures; the logs of a failed run stay in the scratch folder it names.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import FrameType

from tests.bench import (
    bench_affinity,
    bench_exports,
    bench_formats,
    bench_fullview,
    bench_hits,
    bench_latency,
    bench_microscopy,
    bench_precache,
    bench_remote,
    bench_render,
    bench_style,
    bench_urls,
    harness,
    load_bench,
)
from tests.bench.report import Section, document, machine, replace_sections
from tests.bench.wrk import ensure_wrk, wrk_version

BENCHMARKS = (
    "hits", "latency", "render", "style", "load", "affinity", "precache", "remote", "formats",
    "microscopy", "urls", "exports", "fullview",
)  # fmt: skip
# Parts of a benchmark that --only may name alone (not part of the full run: their
# benchmark runs them). waiting: section 1c, hits beside requests waiting for renders.
PARTS = ("waiting",)
WIDTH, HEIGHT = 16384, 12288
DEFAULT_OUTPUT = harness.REPO / "docs" / "BENCHMARKS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter loads")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {BENCHMARKS}, or of the parts {PARTS}",
    )
    parser.add_argument(
        "--image-dir",
        type=Path,
        default=Path.home() / ".cache" / "tilecast-bench",
        help="where the generated images are kept between runs",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"the report (default {DEFAULT_OUTPUT.relative_to(harness.REPO)}; "
        "with --quick, BENCHMARKS.md in the scratch folder)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to fall below 0.5 "
        "(other work on the machine skews absolute numbers)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(BENCHMARKS) - set(PARTS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS} or {PARTS}")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every Processes, stopping children


def redis_version() -> str:
    from tilecast.redis_server import redis_executable

    out = subprocess.run(
        [redis_executable(), "--version"], capture_output=True, text=True, check=False
    )
    words = out.stdout.split()
    version = next((w[2:] for w in words if w.startswith("v=")), out.stdout.strip())
    return f"{version} ({redis_executable()})"


def wait_quiet(limit: float) -> None:
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
        print(f"waiting for a quiet machine: load {os.getloadavg()[0]:.2f}", flush=True)
        time.sleep(10)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    if os.getloadavg()[0] >= 1.0:
        print(
            f"warning: the machine is busy (load {os.getloadavg()[0]:.2f}); "
            "absolute numbers will be low, ratios less affected",
            flush=True,
        )
    started = time.monotonic()
    command = "python -m tests.bench.run" + (" --quick" if args.quick else "")
    if args.only != list(BENCHMARKS):
        command += " --only " + ",".join(args.only)

    wrk = ensure_wrk() if {"hits", "waiting", "exports"} & set(args.only) else ""
    from tilecast.sample import make_demo_images

    print(f"images in {args.image_dir} (generated on first use)", flush=True)
    pyramid, single = make_demo_images(args.image_dir, WIDTH, HEIGHT)
    scratch = Path(tempfile.mkdtemp(prefix="tilecast-bench-"))
    ctx = harness.BenchContext(
        scratch=scratch,
        image_dir=args.image_dir.resolve(),
        pyramid=pyramid.resolve(),
        single=single.resolve(),
        wrk=wrk,
        quick=args.quick,
    )
    extra = {"redis-server": redis_version(), "granian": metadata.version("granian")}
    if wrk:
        extra["wrk"] = wrk_version(wrk)
    info = machine(extra)

    sections: list[Section] = []
    ok = False
    try:
        if "hits" in args.only:
            print("benchmark 1: hit throughput", flush=True)
            if args.quick:
                configs = [bench_hits.HitConfig(workers=2, threads=4, connections=32)]
                sections.extend(
                    bench_hits.run(
                        ctx,
                        configs=configs,
                        seconds=3,
                        rounds=2,
                        warmup=1,
                        levels_below_base=2,
                        mixed_seconds=3,
                        mixed_rounds=1,
                    )
                )
            else:
                configs = [
                    bench_hits.HitConfig(workers=2, threads=4, connections=32),
                    bench_hits.HitConfig(workers=1, threads=8, connections=16),
                    # tilecast up's shape, as the issue measured it (issue 20).
                    bench_hits.HitConfig(
                        workers=2, threads=32, connections=64, full_resolution=True
                    ),
                ]
                sections.extend(
                    bench_hits.run(
                        ctx,
                        configs=configs,
                        seconds=5,
                        rounds=6,
                        warmup=2,
                        levels_below_base=1,
                    )
                )
        if "waiting" in args.only and "hits" not in args.only:
            print("benchmark 1c: hits beside requests waiting for renders", flush=True)
            if args.quick:
                sections.extend(bench_hits.run_waiting(ctx, seconds=3, rounds=1))
            else:
                sections.extend(bench_hits.run_waiting(ctx))
        if "latency" in args.only:
            print("benchmark 2: cold-miss latency", flush=True)
            sections.append(bench_latency.run(ctx, samples=5 if args.quick else 20))
        if "render" in args.only:
            print("benchmark 3: render throughput", flush=True)
            levels = bench_render.LEVELS[1:] if args.quick else bench_render.LEVELS
            sections.append(bench_render.run(ctx, levels=levels))
        if "style" in args.only:
            print("benchmark 4: styled-tile render throughput", flush=True)
            sections.append(bench_style.run(ctx))
        if "load" in args.only:
            print("benchmark 5: many viewers at once (load test)", flush=True)
            if args.quick:
                sections.append(load_bench.run(ctx, users=load_bench.QUICK_USERS, duration=6))
            else:
                sections.append(load_bench.run(ctx))
        if "affinity" in args.only:
            print("benchmark 6: source affinity", flush=True)
            if args.quick:
                sections.append(bench_affinity.run(ctx, duration=6, modes=bench_affinity.MODES[:2]))
            else:
                sections.append(bench_affinity.run(ctx))
        if "precache" in args.only:
            print("benchmark 7: pre-rendering a whole pyramid beside vips dzsave", flush=True)
            sections.append(bench_precache.run(ctx))
        if "remote" in args.only:
            print("benchmark 8: first tile of a 1 GB Girder file by range reads", flush=True)
            sections.append(bench_remote.run(ctx, rounds=1 if args.quick else 5))
        if "formats" in args.only:
            print("benchmark 9: slide formats beside large_image", flush=True)
            sections.append(bench_formats.run(ctx, samples=5 if args.quick else 20))
        if "microscopy" in args.only:
            print(
                "benchmark 10: microscopy formats beside large_image and the libraries", flush=True
            )
            sections.append(
                bench_microscopy.run(
                    ctx, samples=5 if args.quick else 20, rounds=1 if args.quick else 5
                )
            )
        if "fullview" in args.only:
            print("benchmark 13: time to full view, prefetch off and on", flush=True)
            views = bench_fullview.QUICK_VIEWS if args.quick else bench_fullview.VIEWS
            rounds = bench_fullview.QUICK_ROUNDS if args.quick else bench_fullview.ROUNDS
            sections.append(bench_fullview.run(ctx, views=views, rounds=rounds))
        if "exports" in args.only:
            print("benchmark 12: OME-Zarr chunks and DICOMweb frames beside tiles", flush=True)
            sections.append(bench_exports.run(ctx, seconds=3 if args.quick else 8))
        if "urls" in args.only:
            print("benchmark 11: URL sources (S3, HTTP) by range, viewport throughput", flush=True)
            if args.quick:
                sections.append(bench_urls.run(ctx, rounds=1, viewports=2))
            else:
                sections.append(bench_urls.run(ctx, rounds=3, viewports=6))
        ok = True
    finally:
        if not ok:
            print(f"benchmark failed; logs are kept in {scratch}", file=sys.stderr, flush=True)

    output = args.output or (scratch / "BENCHMARKS.md" if args.quick else DEFAULT_OUTPUT)
    info["duration of the run"] = f"{time.monotonic() - started:.0f} s"
    info["load average at the end (1/5/15 min)"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.only != list(BENCHMARKS) and args.output is None and not args.quick
    if partial and output.exists():
        # A subset re-run replaces its own sections of the full report and keeps the rest.
        output.write_text(replace_sections(output.read_text(), command, info, sections))
    else:
        output.write_text(document(command, info, sections, quick=args.quick))
    print(f"wrote {output}", flush=True)
    if output.parent != scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
