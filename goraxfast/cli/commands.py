"""The subcommands: one ``def _cmd(args, config) -> int`` each (and ``_cmd_args(parser)`` for
its options, ``_cmd_check(args)`` for checks across flags), listed in :data:`COMMANDS`.

The SQS clients (botocore, aiobotocore: most of a second to import) are imported by the commands
that use them, so that a mistake is reported, and --help or --version answered, at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import msgspec

from goraxfast.cli import admin
from goraxfast.cli.flags import BadFlag, flag, handler_path, queue_name, readable_file
from goraxfast.cli.output import err as _err
from goraxfast.cli.output import one_line as _one_line
from goraxfast.config import QUEUE_NAME, Config, integer, number
from goraxfast.core.exit_codes import EXIT_FAILED, EXIT_OK
from goraxfast.core.message import ExecutionMessage
from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError, HandlerError, MessageError

if TYPE_CHECKING:
    from goraxfast.core.health import HealthStatus
    from goraxfast.publish.publisher import PublishResult

SQS_MAX_RECEIVE_COUNT = 1000  # RedrivePolicy maxReceiveCount: 1-1000
MAX_DEMO_MESSAGES = 1_000_000


# --- queues create ---------------------------------------------------------------------------


def _queues_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default="goraxfast-executions",
        type=flag("--name", queue_name),
        help="main queue name",
    )
    p.add_argument(
        "--dlq-name",
        type=flag("--dlq-name", queue_name),
        help="dead-letter queue name (default: NAME-dlq)",
    )
    p.add_argument(
        "--max-receive-count",
        type=flag("--max-receive-count", integer(1, SQS_MAX_RECEIVE_COUNT)),
        default=10,
        help="receives before SQS itself moves a message to the DLQ; keep it above "
        "QUEUE_MAX_RETRIES so the engine dead-letters first, with the reason (default 10)",
    )
    p.add_argument(
        "--visibility-timeout",
        type=flag("--visibility-timeout", integer(0, SQS_MAX_VISIBILITY_S)),
        help=f"seconds, 0-{SQS_MAX_VISIBILITY_S} (default: QUEUE_VISIBILITY_TIMEOUT)",
    )


def dlq_name_for(name: str) -> str:
    """``jobs`` -> ``jobs-dlq``; a FIFO queue's DLQ must be FIFO too: ``jobs.fifo`` -> ``jobs-dlq.fifo``."""
    stem, fifo = (name[:-5], ".fifo") if name.endswith(".fifo") else (name, "")
    return f"{stem}-dlq{fifo}"


def _queues_create_check(args: argparse.Namespace) -> list[ConfigProblem]:
    name, dlq_name = args.name, args.dlq_name
    if isinstance(name, BadFlag) or isinstance(dlq_name, BadFlag):
        return []
    if dlq_name is None:
        derived = dlq_name_for(name)
        if not QUEUE_NAME.fullmatch(derived):
            why = f"its DLQ would be {derived!r}, over 80 characters: shorten it or give --dlq-name"
            return [ConfigProblem("--name", name, why)]
        return []
    if name.endswith(".fifo") != dlq_name.endswith(".fifo"):
        kind = "a FIFO queue (ending .fifo)" if name.endswith(".fifo") else "a standard queue"
        return [ConfigProblem("--dlq-name", dlq_name, f"{kind}, as --name {name!r} is")]
    if dlq_name == name:
        return [ConfigProblem("--dlq-name", dlq_name, "a queue other than --name")]
    return []


def _queues_create(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.sqs.botocore import SyncSQSClient

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
    source.add_argument(
        "--count",
        type=flag("--count", integer(1, MAX_DEMO_MESSAGES)),
        default=100,
        help=f"demo messages to publish, 1-{MAX_DEMO_MESSAGES} (default 100)",
    )
    source.add_argument(
        "--file",
        type=flag("--file", readable_file),
        help="JSON lines, one execution mapping per line",
    )
    p.add_argument(
        "--tenants",
        type=flag("--tenants", integer(1, MAX_DEMO_MESSAGES)),
        help="spread demo messages over K tenants (default 5)",
    )


def _publish_check(args: argparse.Namespace) -> list[ConfigProblem]:
    if args.file is not None and args.tenants is not None:
        shown = args.tenants.problem.value if isinstance(args.tenants, BadFlag) else args.tenants
        return [
            ConfigProblem("--tenants", str(shown), "only with --count (a --file names its tenants)")
        ]
    return []


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
    from goraxfast.publish.adapter import build_message

    good: list[ExecutionMessage] = []
    bad: list[str] = []
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number_, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                good.append(build_message(data))
            except (ValueError, MessageError) as exc:
                bad.append(f"{path}:{number_}: {_one_line(str(exc))}")
    return good, bad


async def publish_messages(config: Config, msgs: Sequence[ExecutionMessage]) -> PublishResult:
    from goraxfast.publish.publisher import Publisher

    async with Publisher.from_config(config) as publisher:
        return await publisher.publish_batch(msgs)


def _publish(args: argparse.Namespace, config: Config) -> int:
    bad: list[str] = []
    if args.file is not None:
        try:
            msgs, bad = read_jsonl(args.file)
        except OSError as exc:
            reason = f"a readable JSON-lines file ({exc.strerror or exc})"
            raise ConfigError([ConfigProblem("--file", str(args.file), reason)]) from exc
    else:
        msgs = demo_messages(args.count, 5 if args.tenants is None else args.tenants)
    for problem in bad:
        _err(problem)
    started = time.perf_counter()
    result = asyncio.run(publish_messages(config, msgs))
    elapsed = time.perf_counter() - started
    for failure in result.failed[:20]:
        _err(_one_line(f"failed {failure.execution_id}: {failure.code} {failure.message}"))
    rate = len(result.published) / elapsed if elapsed > 0 else 0.0
    print(
        f"published {len(result.published)}, failed {len(result.failed) + len(bad)} "
        f"in {elapsed:.2f} s ({rate:.0f} msgs/s)"
    )
    return EXIT_OK if result.ok and not bad else EXIT_FAILED


# --- stats -----------------------------------------------------------------------------------

WATCH_MIN_S, WATCH_MAX_S = 1.0, 86_400.0  # SQS's approximate counts move about once a minute


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--watch",
        nargs="?",
        type=flag("--watch", number(WATCH_MIN_S, WATCH_MAX_S)),
        const=2.0,
        metavar="SECONDS",
        help=f"repeat every SECONDS ({WATCH_MIN_S:g}-{WATCH_MAX_S:g}, default 2) until interrupted",
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
    from goraxfast.ops.queue_metrics import MetricsCollector
    from goraxfast.sqs.botocore import SQSClient

    async with SQSClient(config) as sqs:
        collector = MetricsCollector(
            sqs, queue_url=config.queue_url, dlq_url=config.dlq_url, interval_s=args.watch or 30
        )
        while True:
            try:
                await collector.collect()
            except GoraxfastError as exc:
                _err(f"goraxfast stats: {_one_line(str(exc))}")
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
    return asyncio.run(_stats_loop(args, config))


# --- run ----------------------------------------------------------------------------------------


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--handler",
        required=True,
        type=flag("--handler", handler_path),
        metavar="MODULE:FUNCTION",
        help="the handler to run on every message (the current directory is importable)",
    )
    p.add_argument(
        "--worker-init",
        type=flag("--worker-init", handler_path),
        metavar="MODULE:FUNCTION",
        help="called as FUNCTION(worker_index) once in each new worker before its first "
        "message: open connections, load per-process state (a fresh worker runs it again)",
    )
    p.add_argument(
        "--workers",
        type=flag("--workers", integer(1, 1024)),
        metavar="N",
        help="worker processes, 1-1024 (overrides WORKER_PROCESSES; default: the CPUs it may use)",
    )


def _run(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.engine.engine import Engine
    from goraxfast.worker.handler import bind_handler, load_handler, worker_init_problem

    if args.workers is not None:
        config = config.with_(worker_processes=args.workers)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as gunicorn does: the app's own modules resolve
    problems: list[ConfigProblem] = []
    bound = worker_init = None
    try:
        bound = bind_handler(args.handler)  # before forking: a handler that cannot load is
    except HandlerError as exc:  # a mistake of the flag, told in one line
        problems.append(ConfigProblem("--handler", args.handler, str(exc)))
    if args.worker_init is not None:
        try:
            worker_init = load_handler(args.worker_init, "worker_init")
        except HandlerError as exc:
            problems.append(ConfigProblem("--worker-init", args.worker_init, str(exc)))
        else:
            shape = worker_init_problem(worker_init)
            if shape:
                problems.append(ConfigProblem("--worker-init", args.worker_init, shape))
    if problems or bound is None:
        raise ConfigError(problems)
    engine = Engine(
        config, bound.func, worker_init=cast("Callable[[int], None] | None", worker_init)
    )
    return engine.run()


# --- the table and main ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace, Config], int]
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    check: Callable[[argparse.Namespace], list[ConfigProblem]] | None = None
    needs_queue: bool = False  # AWS_SQS_QUEUE_URL must be set
    log_level: str = "warning"  # without -v or --log-level


COMMANDS: dict[str, Command] = {
    "queues create": Command(
        "create a main queue and its DLQ with a redrive policy; prints eval-able exports",
        _queues_create,
        _queues_create_args,
        _queues_create_check,
    ),
    "queues purge": Command(admin.PURGE_HELP, admin.queues_purge, admin.queues_purge_args),
    "dlq peek": Command(admin.PEEK_HELP, admin.dlq_peek, admin.dlq_peek_args),
    "dlq redrive": Command(
        admin.REDRIVE_HELP, admin.dlq_redrive, admin.dlq_redrive_args, needs_queue=True
    ),
    "publish": Command(
        "publish demo messages or a JSON-lines file",
        _publish,
        _publish_args,
        _publish_check,
        needs_queue=True,
    ),
    "stats": Command("queue depths, DLQ depth and health", _stats, _stats_args, needs_queue=True),
    "run": Command(
        "run the engine: drain the queue with a handler until SIGTERM/SIGINT",
        _run,
        _run_args,
        needs_queue=True,
        log_level="info",  # the engine's start, stop and failures, and the handler's own INFO
    ),
}


#: Help for command groups (the first words of multi-word commands).
GROUPS: dict[str, str] = {
    "queues": "provision and purge SQS queues",
    "dlq": "peek at dead letters and move them back",
}
