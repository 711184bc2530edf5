"""The ``tilecast`` command line: ``up``, ``api``, ``worker``, ``add``, ``sign``, ..."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import redis

from tilecast import jobs_command, sign, stackfile
from tilecast.common.errors import SourceRefused, TilecastError
from tilecast.common.logs import configure_logging
from tilecast.common.settings import Settings, get_settings
from tilecast.servers import DEFAULT_SERVER, SERVERS

# Commands that act on a running stack: they find it through the state file ``up``
# leaves in its data directory (tilecast/stackfile.py) unless TILECAST_* names a Redis.
STACK_COMMANDS = ("add", "precache", "jobs", "stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tilecast", description="A distributed tile server for very large images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run Redis, a worker and the api on this machine")
    up.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: a sample)")
    up.add_argument("--host", default="127.0.0.1", help="address the api binds to")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument(
        "--data-dir", type=Path, default=stackfile.DEFAULT_DATA_DIR, help="redis, sample, logs"
    )
    up.add_argument(
        "--root",
        dest="roots",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a directory images may also be added from (repeatable)",
    )
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

    jobs_command.add_parsers(commands)  # precache, jobs (tilecast/jobs_command.py)
    sign.add_parser(commands)  # tilecast/sign.py

    add = commands.add_parser("add", help="register a local image; prints its id")
    add.add_argument("path")
    for name in (*STACK_COMMANDS, "sign"):
        commands.choices[name].add_argument(
            "--data-dir",
            type=Path,
            default=stackfile.DEFAULT_DATA_DIR,
            help="the data directory of the tilecast up to act on (default: %(default)s)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings, origin = _settings(args)
    except TilecastError as err:  # a TILECAST_* setting that cannot be used, no stack
        print(f"tilecast {args.command}: {err.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # pyvips relays libvips' own progress chatter at INFO: keep it out of INFO logs.
    logging.getLogger("pyvips").setLevel(max(logging.WARNING, logging.root.level))
    if args.command in STACK_COMMANDS:
        # `add` opens the file in this process: the reader's INFO lines belong in a
        # worker's log, not between a command's answer and its one-line errors.
        logging.getLogger("workers").setLevel(max(logging.WARNING, logging.root.level))
    try:
        return _run(args, settings)
    except TilecastError as err:
        print(f"tilecast {args.command}: {err.message}", file=sys.stderr)
        return 2
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        print(
            f"tilecast {args.command}: Redis is unreachable ({_one_line(exc)}); "
            f"its URL came from {origin}",
            file=sys.stderr,
        )
        return 2
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        print(f"tilecast {args.command}: Redis failed: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`tilecast jobs | head`): nothing more to say, and
        # Python must not complain while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _settings(args: argparse.Namespace) -> tuple[Settings, str]:
    """The settings of this command and where its Redis URLs came from. Commands that
    act on a stack read the environment here, once, to decide between the TILECAST_*
    variables and the stack ``up`` recorded (tilecast/stackfile.py)."""
    if args.command in STACK_COMMANDS:
        return stackfile.settings_for(args.data_dir, os.environ)
    if args.command == "sign" and args.url is None:
        try:
            args.url = stackfile.api_url(args.data_dir, os.environ) or sign.DEFAULT_URL
        except TilecastError as err:  # signing needs no running stack: say, and go on
            args.url = sign.DEFAULT_URL
            print(f"tilecast sign: {err.message}; signing for {args.url}", file=sys.stderr)
    return get_settings(), "the TILECAST_* environment"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from tilecast.up import UpOptions, run_up

        options = UpOptions(
            images=args.images,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir.resolve(),
            roots=tuple(args.roots),
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
        from tilecast.stats_command import run_stats

        return run_stats(settings, as_json=args.json)
    if args.command in jobs_command.COMMANDS:
        return jobs_command.run(args, settings)
    if args.command == "sign":
        print(sign.signed_url(args, settings))
        return 0
    from tilecast.register import register_path

    try:
        record = register_path(args.path, settings)
    except SourceRefused as err:
        if not settings.source_roots:
            raise
        roots = ", ".join(settings.source_roots)
        raise SourceRefused(
            f"{args.path}: {err.message} ({roots}; tilecast up --root DIR adds more)"
        ) from None
    print(record.id)
    return 0
