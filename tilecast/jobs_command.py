"""``tilecast precache`` and ``tilecast jobs``: pre-rendering jobs from the command line.

They talk to the state Redis directly (as the api does, through common/jobstore.py), so
they work without an api running; a worker serving the bulk queue runs the jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from tilecast.common.jobspec import parse_job_request
from tilecast.common.jobstore import CANCELLED, RUNNING, JobRecord, JobStore
from tilecast.common.redisconn import connect
from tilecast.common.registry import SourceRegistry
from tilecast.common.settings import Settings

# How often --wait redraws the bar (a terminal) or prints a line (anything else).
BAR_PERIOD = 0.5
LINE_PERIOD = 5.0
BAR_WIDTH = 30


def precache(
    source_id: str,
    args: Mapping[str, Any],
    settings: Settings,
    *,
    wait: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Submit a job; with ``wait`` follow it to its end. Exit status: 0 done, 1 done
    with failed tiles, 3 cancelled."""
    state = connect(settings.state_url)
    try:
        registry = SourceRegistry(state)
        record = registry.get(source_id)
        generation = registry.generation(source_id) or 0
        spec = parse_job_request(source_id, args, record.metadata, generation, settings)
        store = JobStore(state)
        job, created = store.submit(spec)
        verb = "started" if created else "already running as"
        print(f"job {job.id} {verb}: {job.total} tiles in {job.batches} batches", file=out)
        if not wait:
            return 0
        final = follow(store, job.id, out)
        if final.state == CANCELLED:
            return 3
        return 1 if final.failed else 0
    finally:
        state.close()


def follow(store: JobStore, job_id: str, out: TextIO) -> JobRecord:
    """Show a job's progress until it ends: a live bar on a terminal, plain lines
    otherwise (logs, pipes)."""
    tty = out.isatty()
    period = BAR_PERIOD if tty else LINE_PERIOD
    last_line = 0.0
    while True:
        record = store.get(job_id)
        now = time.monotonic()
        ended = record.state != RUNNING
        if tty:
            out.write("\r" + progress_bar(record) + "\x1b[K")
            if ended:
                out.write("\n")
            out.flush()
        elif ended or now - last_line >= period:
            print(progress_line(record), file=out, flush=True)
            last_line = now
        if ended:
            return record
        time.sleep(min(period, BAR_PERIOD))


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_bar(record: JobRecord) -> str:
    p = record.progress()
    settled = p["done"] + p["failed"]
    fraction = settled / p["total"] if p["total"] else 1.0
    filled = int(BAR_WIDTH * fraction)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    failed = f" {p['failed']} failed" if p["failed"] else ""
    return (
        f"[{bar}] {settled}/{p['total']} {fraction:6.1%} "
        f"{p['tilesPerSecond']:.0f} tiles/s ETA {_eta(p['eta'])}{failed} {record.state}"
    )


def progress_line(record: JobRecord) -> str:
    p = record.progress()
    return (
        f"job {record.id} {record.state}: {p['done'] + p['failed']}/{p['total']} tiles "
        f"({p['skipped']} skipped, {p['failed']} failed), {p['tilesPerSecond']:.1f} tiles/s, "
        f"ETA {_eta(p['eta'])}"
    )


def jobs_command(
    settings: Settings,
    job_id: str | None,
    *,
    cancel: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """List jobs, or show (or cancel) one."""
    state = connect(settings.state_url)
    try:
        store = JobStore(state)
        if job_id is None:
            records = store.list()
            if as_json:
                print(json.dumps([r.to_json() for r in records], indent=2), file=out)
                return 0
            print(f"{'id':16}  {'state':9}  {'source':24}  {'levels':8}  progress", file=out)
            for record in records:
                levels = record.spec.levels
                span = f"{levels[0]}-{levels[-1]}" if levels else "-"
                p = record.progress()
                print(
                    f"{record.id:16}  {record.state:9}  {record.spec.source:24}  {span:8}  "
                    f"{p['done'] + p['failed']}/{p['total']} ({p['failed']} failed) "
                    f"{p['tilesPerSecond']:.1f}/s",
                    file=out,
                )
            return 0
        if cancel:
            store.cancel(job_id, settings.job_retention)
        body = store.describe(job_id)
        print(json.dumps(body, indent=2) if as_json else progress_line(store.get(job_id)), file=out)
        for sample in [] if as_json else body["errors"]:
            print(f"  error: {json.dumps(sample, sort_keys=True)}", file=out)
        return 0
    finally:
        state.close()


COMMANDS = ("precache", "jobs")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``precache`` and ``jobs``, added to the ``tilecast`` command line."""
    pre = commands.add_parser("precache", help="pre-render tiles of an image into the cache")
    pre.add_argument("source", metavar="ID", help="the source id (tilecast add prints it)")
    pre.add_argument("--levels", help="a range like 0-6 or a list like 0,2,4 (default: all)")
    pre.add_argument("--frames", help="a range, a list or 'all' (default: 0)")
    pre.add_argument("--region", help="left,top,right,bottom in base pixels (default: all)")
    pre.add_argument("--style", help="a style as JSON")
    pre.add_argument("--encoding", help="JPEG, PNG, WEBP, TIFF or AVIF")
    pre.add_argument("--jpeg-quality", dest="jpegQuality")
    pre.add_argument("--jpeg-subsampling", dest="jpegSubsampling")
    pre.add_argument("--tiff-compression", dest="tiffCompression")
    pre.add_argument("--webp-quality", dest="webpQuality")
    pre.add_argument("--thumbnail", action="store_true", help="also the 256x256 thumbnail")
    pre.add_argument("--wait", action="store_true", help="follow the job's progress to its end")
    jobs = commands.add_parser("jobs", help="list pre-rendering jobs, or show or cancel one")
    jobs.add_argument("job", nargs="?", metavar="JOB")
    jobs.add_argument("--cancel", action="store_true", help="cancel JOB")
    jobs.add_argument("--json", action="store_true", help="JSON output")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "precache":
        names = (
            "levels", "frames", "region", "style", "encoding", "jpegQuality",
            "jpegSubsampling", "tiffCompression", "webpQuality",
        )  # fmt: skip
        options: dict[str, Any] = {
            name: getattr(args, name) for name in names if getattr(args, name) is not None
        }
        if args.thumbnail:
            options["thumbnail"] = "true"
        return precache(args.source, options, settings, wait=args.wait)
    if args.cancel and not args.job:
        print("tilecast jobs: --cancel needs a JOB id", file=sys.stderr)
        return 2
    return jobs_command(settings, args.job, cancel=args.cancel, as_json=args.json)
