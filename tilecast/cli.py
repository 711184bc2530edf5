"""The ``tilecast`` command line: ``up``, ``api``, ``worker``, ``add``, ``sign``, ..."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import TilecastError
from common.logs import configure_logging
from common.settings import get_settings
from tilecast import jobs, sign
from tilecast.servers import DEFAULT_SERVER, SERVERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tilecast", description="A distributed tile server for very large images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run Redis, a worker and the api on this machine")
    up.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: a sample)")
    up.add_argument("--host", default="127.0.0.1", help="address the api binds to")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path, default=Path(".tilecast"), help="redis, sample, logs")
    up.add_argument("--concurrency", type=int, default=min(4, os.cpu_count() or 1))
    up.add_argument("--api-workers", type=int, default=2)
    up.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER, help="api HTTP server")
    up.add_argument(
        "--cache-memory", default="1gb", help="maxmemory of its cache Redis (e.g. 512mb, 4gb)"
    )

    api = commands.add_parser("api", help="the HTTP api under granian or gunicorn")
    api.add_argument("--bind", default="127.0.0.1:8080", metavar="HOST:PORT")
    api.add_argument("--workers", type=int, default=2, help="processes")
    api.add_argument("--threads", type=int, default=32, help="threads per process")
    api.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER, help="HTTP server")

    worker = commands.add_parser("worker", help="a Celery worker pool")
    worker.add_argument("--queues", default="interactive,bulk")
    worker.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    worker.add_argument("--loglevel", default=None, help="default: TILECAST_LOG_LEVEL")

    stats = commands.add_parser("stats", help="cache, render and queue numbers (as /metrics)")
    stats.add_argument("--json", action="store_true", help="one JSON object")

    jobs.add_parsers(commands)  # precache, jobs (tilecast/jobs.py)
    sign.add_parser(commands)  # tilecast/sign.py

    add = commands.add_parser("add", help="register a local image; prints its id")
    add.add_argument("path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except TilecastError as err:  # a TILECAST_* setting that cannot be used
        print(f"tilecast {args.command}: {err.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # pyvips relays libvips' own progress chatter at INFO: keep it out of INFO logs.
    logging.getLogger("pyvips").setLevel(max(logging.WARNING, logging.root.level))
    try:
        return _run(args)
    except TilecastError as err:
        print(f"tilecast {args.command}: {err.message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.command == "up":
        from tilecast.up import UpOptions, run_up

        options = UpOptions(
            images=args.images,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir.resolve(),
            concurrency=args.concurrency,
            api_workers=args.api_workers,
            server=args.server,
            cache_memory=args.cache_memory,
        )
        return run_up(options)
    if args.command == "api":
        from tilecast.servers import ServerOptions, run_server

        run_server(args.server, ServerOptions(args.bind, args.workers, args.threads), settings)
        return 0
    if args.command == "worker":
        from tilecast.worker import run_worker

        run_worker(args.queues, args.concurrency, args.loglevel or settings.log_level)
        return 0
    if args.command == "stats":
        from tilecast.stats import run_stats

        return run_stats(settings, as_json=args.json)
    if args.command in jobs.COMMANDS:
        return jobs.run(args, settings)
    if args.command == "sign":
        print(sign.signed_url(args, settings))
        return 0
    from tilecast.register import register_path

    print(register_path(args.path, settings).id)
    return 0
