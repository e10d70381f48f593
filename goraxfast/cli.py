"""The ``goraxfast`` command: provision queues, publish workloads, watch depth and health.

Every subcommand reads the same environment as the engine (shared/SPEC.md §2) through
:meth:`Config.from_env`, so what works here works for ``goraxfast run``; a bad environment is
reported in full, every problem at once, with exit code 2 and never a traceback.

To add a subcommand, write ``def _cmd(args, config) -> int`` (and, if it takes options, a
``def _cmd_args(parser)``) and add one line to :data:`COMMANDS`. A name with a space
(``"queues create"``) becomes a nested subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from goraxfast.adapter import build_message
from goraxfast.config import Config
from goraxfast.core.health import HealthStatus
from goraxfast.core.message import ExecutionMessage
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError, MessageError
from goraxfast.metrics import MetricsCollector
from goraxfast.publisher import Publisher, PublishResult
from goraxfast.sqs import SQSClient, SyncSQSClient

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)


# --- queues create ---------------------------------------------------------------------------


def _queues_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="goraxfast-executions", help="main queue name")
    p.add_argument("--dlq-name", help="dead-letter queue name (default: NAME-dlq)")
    p.add_argument(
        "--max-receive-count",
        type=int,
        default=10,
        help="receives before SQS itself moves a message to the DLQ; keep it above "
        "QUEUE_MAX_RETRIES so the engine dead-letters first, with the reason (default 10)",
    )
    p.add_argument(
        "--visibility-timeout", type=int, help="seconds (default: QUEUE_VISIBILITY_TIMEOUT)"
    )


def dlq_name_for(name: str) -> str:
    """``jobs`` -> ``jobs-dlq``; a FIFO queue's DLQ must be FIFO too: ``jobs.fifo`` -> ``jobs-dlq.fifo``."""
    stem, fifo = (name[:-5], ".fifo") if name.endswith(".fifo") else (name, "")
    return f"{stem}-dlq{fifo}"


def _queues_create(args: argparse.Namespace, config: Config) -> int:
    dlq_name = args.dlq_name or dlq_name_for(args.name)
    visibility = (
        args.visibility_timeout
        if args.visibility_timeout is not None
        else config.visibility_timeout_s
    )
    if args.max_receive_count <= config.max_retries:
        _err(
            f"warning: --max-receive-count {args.max_receive_count} <= QUEUE_MAX_RETRIES "
            f"{config.max_retries}: SQS will dead-letter before the engine can record why"
        )
    with SyncSQSClient(config) as sqs:
        main_url, dlq_url = sqs.create_queues(
            args.name, dlq_name, args.max_receive_count, visibility
        )
    where = config.aws_endpoint or f"AWS {config.aws_region}"
    _err(f"created {args.name} and {dlq_name} on {where} (redrive after {args.max_receive_count})")
    print(f"export AWS_SQS_QUEUE_URL={shlex.quote(main_url)}")
    print(f"export AWS_SQS_DLQ_URL={shlex.quote(dlq_url)}")
    return EXIT_OK


# --- publish ---------------------------------------------------------------------------------


def _publish_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--count", type=int, default=100, help="demo messages to publish")
    source.add_argument("--file", type=Path, help="JSON lines, one execution mapping per line")
    p.add_argument("--tenants", type=int, default=5, help="spread demo messages over K tenants")


def demo_messages(count: int, tenants: int) -> list[ExecutionMessage]:
    """A valid workload spread round-robin over ``tenants`` tenants and three workflows."""
    return [
        ExecutionMessage.new(
            tenant_id=f"tenant-{i % max(tenants, 1)}",
            workflow_id=f"workflow-{i % 3}",
            workflow_version=1,
            trigger_type="demo",
            trigger_data=msgspec.json.encode({"n": i}),
            correlation_id=f"demo-{i}",
        )
        for i in range(count)
    ]


def read_jsonl(path: Path) -> tuple[list[ExecutionMessage], list[str]]:
    """The good messages of a JSON-lines file, and one ``file:line: reason`` per bad line."""
    good: list[ExecutionMessage] = []
    bad: list[str] = []
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                good.append(build_message(data))
            except (ValueError, MessageError) as exc:
                bad.append(f"{path}:{number}: {exc}")
    return good, bad


async def publish_messages(config: Config, msgs: Sequence[ExecutionMessage]) -> PublishResult:
    async with Publisher.from_config(config) as publisher:
        return await publisher.publish_batch(msgs)


def _publish(args: argparse.Namespace, config: Config) -> int:
    config.require_queue()
    bad: list[str] = []
    if args.file is not None:
        try:
            msgs, bad = read_jsonl(args.file)
        except OSError as exc:
            _err(f"goraxfast publish: cannot read {args.file}: {exc}")
            return EXIT_FAILED
    else:
        msgs = demo_messages(args.count, args.tenants)
    for problem in bad:
        _err(problem)
    started = time.perf_counter()
    result = asyncio.run(publish_messages(config, msgs))
    elapsed = time.perf_counter() - started
    for failure in result.failed[:20]:
        _err(f"failed {failure.execution_id}: {failure.code} {failure.message}")
    rate = len(result.published) / elapsed if elapsed > 0 else 0.0
    print(
        f"published {len(result.published)}, failed {len(result.failed) + len(bad)} "
        f"in {elapsed:.2f} s ({rate:.0f} msgs/s)"
    )
    return EXIT_OK if result.ok and not bad else EXIT_FAILED


# --- stats -----------------------------------------------------------------------------------


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        metavar="SECONDS",
        help="repeat every SECONDS (default 2) until interrupted",
    )
    p.add_argument("--json", action="store_true", help="one JSON document per collection")


def format_stats(status: HealthStatus, queue_url: str, dlq_url: str) -> str:
    """The human view of one collection: depths by state, DLQ depth, verdict and issues."""
    m = status.metrics
    lines = [f"queue   {queue_url}"]
    if m is not None:
        lines += [
            f"  visible     {m.visible}",
            f"  in flight   {m.in_flight}",
            f"  delayed     {m.delayed}",
            f"  total       {m.total}",
        ]
        dlq = "no DLQ configured" if m.dlq_depth is None else f"{m.dlq_depth} ({dlq_url})"
        lines.append(f"dlq     {dlq}")
    lines.append(f"health  {'healthy' if status.healthy else 'unhealthy'}")
    lines += [f"  - {issue}" for issue in status.issues]
    return "\n".join(lines)


async def _stats_loop(args: argparse.Namespace, config: Config) -> int:
    async with SQSClient(config) as sqs:
        collector = MetricsCollector(
            sqs, queue_url=config.queue_url, dlq_url=config.dlq_url, interval_s=args.watch or 30
        )
        while True:
            try:
                await collector.collect()
            except GoraxfastError as exc:
                _err(f"goraxfast stats: {exc}")
                if args.watch is None:
                    return EXIT_FAILED
            status = collector.health_status(config.max_queue_depth)
            if args.json:
                print(json.dumps(status.to_dict()), flush=True)
            else:
                print(format_stats(status, config.queue_url, config.dlq_url), flush=True)
            if args.watch is None:
                return EXIT_OK
            await asyncio.sleep(args.watch)
            if not args.json:
                print(flush=True)


def _stats(args: argparse.Namespace, config: Config) -> int:
    config.require_queue()
    return asyncio.run(_stats_loop(args, config))


# --- run ----------------------------------------------------------------------------------------


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--handler",
        required=True,
        metavar="MODULE:FUNCTION",
        help="the handler to run on every message (the current directory is importable)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (overrides WORKER_PROCESSES; default: CPU count)",
    )


def _run(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.engine import Engine

    config.require_queue()
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError([ConfigProblem("--workers", str(args.workers), "an integer >= 1")])
        config = config.with_(worker_processes=args.workers)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as gunicorn does: the app's own modules resolve
    logging.getLogger("goraxfast").setLevel(logging.INFO)
    engine = Engine(config, args.handler)
    return engine.run()


# --- the table and main ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace, Config], int]
    configure: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {
    "queues create": Command(
        "create a main queue and its DLQ with a redrive policy; prints eval-able exports",
        _queues_create,
        _queues_create_args,
    ),
    "publish": Command("publish demo messages or a JSON-lines file", _publish, _publish_args),
    "stats": Command("queue depths, DLQ depth and health", _stats, _stats_args),
    "run": Command(
        "run the engine: drain the queue with a handler until SIGTERM/SIGINT", _run, _run_args
    ),
}


#: Help for command groups (the first words of multi-word commands).
GROUPS: dict[str, str] = {"queues": "provision SQS queues"}


def build_parser(commands: dict[str, Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goraxfast",
        description="goraxfast: drain SQS queues of gorax workflow executions, fast.",
        epilog="Settings come from the environment (QUEUE_*, AWS_*, WORKER_*; see the README).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    groups: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {
        (): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    }
    for name, command in commands.items():
        words = tuple(name.split())
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                help_ = GROUPS.get(" ".join(prefix))
                group_parser = groups[prefix[:-1]].add_parser(prefix[-1], help=help_)
                groups[prefix] = group_parser.add_subparsers(
                    dest="_".join(prefix), required=True, metavar="COMMAND"
                )
        sub = groups[words[:-1]].add_parser(words[-1], help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = Config.from_env(os.environ)
        code: int = args._run(args, config)
        return code
    except ConfigError as exc:
        _err(f"goraxfast: {exc}")
        return EXIT_CONFIG
    except GoraxfastError as exc:
        _err(f"goraxfast {args.command}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
