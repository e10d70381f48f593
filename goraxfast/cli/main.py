"""The ``goraxfast`` command: provision queues, publish workloads, watch depth and health.

Every subcommand reads the same environment as the engine (shared/SPEC.md §2) through
:meth:`Config.from_env`, so what works here works for ``goraxfast run``. A mistake, in a flag or
in the environment, is never a traceback: every problem is found before anything runs and
printed as one line (the flag or variable, its value, what is allowed), then the command exits
with :data:`EXIT_CONFIG`. A closed stdout (``goraxfast stats | head``) ends the command quietly
with :data:`EXIT_BROKEN_PIPE`.

To add a subcommand, write ``def _cmd(args, config) -> int`` (and, if it takes options, a
``def _cmd_args(parser)``) and add one line to :data:`COMMANDS`. A name with a space
(``"queues create"``) becomes a nested subcommand. A flag whose value can be wrong gets a
``type=`` from :func:`flag` so that its mistake is reported with all the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from goraxfast.config import MISSING_QUEUE, QUEUE_NAME, QUEUE_NAME_RULE, Config, integer, number
from goraxfast.core.exit_codes import (
    CLI_EXIT_BROKEN_PIPE,
    CLI_EXIT_INTERRUPTED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
)
from goraxfast.core.message import ExecutionMessage
from goraxfast.core.sqs_model import SQS_MAX_VISIBILITY_S
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError, HandlerError, MessageError
from goraxfast.worker.handler import DOTTED_NAME

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from goraxfast.core.health import HealthStatus
    from goraxfast.publish.publisher import PublishResult

# The SQS clients (botocore, aiohttp: most of a second to import) are imported by the commands
# that use them, so that a mistake is reported, and --help or --version answered, at once.

# exit codes: the table is goraxfast.core.exit_codes
EXIT_INTERRUPTED = CLI_EXIT_INTERRUPTED
EXIT_BROKEN_PIPE = CLI_EXIT_BROKEN_PIPE

LOG_LEVELS = ("debug", "info", "warning", "error")
SQS_MAX_RECEIVE_COUNT = 1000  # RedrivePolicy maxReceiveCount: 1-1000
MAX_DEMO_MESSAGES = 1_000_000


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)


# --- flags whose values are checked with the environment's rules -------------------------------


@dataclass(frozen=True, slots=True)
class BadFlag:
    """What a :func:`flag` converter returns instead of raising: argparse would stop at the
    first bad flag, and print its usage; this way every mistake is listed, one line each."""

    problem: ConfigProblem


def flag(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with ``parse`` (a config parser raising ValueError
    with the allowed range) and turns a refusal into a :class:`BadFlag`."""

    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            return BadFlag(ConfigProblem(name, raw, str(exc)))

    return convert


def _queue_name(raw: str) -> str:
    if not QUEUE_NAME.fullmatch(raw):
        raise ValueError(f"a queue name: {QUEUE_NAME_RULE}")
    return raw


def _readable_file(raw: str) -> Path:
    path = Path(raw)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"a readable JSON-lines file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ValueError("a readable JSON-lines file (this is a directory)")
    return path


def _handler_path(raw: str) -> str:
    module, sep, attr = raw.partition(":")
    if not sep or not DOTTED_NAME.fullmatch(module) or not DOTTED_NAME.fullmatch(attr):
        raise ValueError("MODULE:FUNCTION, like myapp.jobs:handle")
    return raw


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError("one of: " + ", ".join(options))
        return raw.lower()

    return parse


def flag_problems(args: argparse.Namespace) -> list[ConfigProblem]:
    """Every flag that :func:`flag` refused, in the order the flags are declared."""
    return [value.problem for value in vars(args).values() if isinstance(value, BadFlag)]


# --- queues create ---------------------------------------------------------------------------


def _queues_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default="goraxfast-executions",
        type=flag("--name", _queue_name),
        help="main queue name",
    )
    p.add_argument(
        "--dlq-name",
        type=flag("--dlq-name", _queue_name),
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
        type=flag("--file", _readable_file),
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
        type=flag("--handler", _handler_path),
        metavar="MODULE:FUNCTION",
        help="the handler to run on every message (the current directory is importable)",
    )
    p.add_argument(
        "--workers",
        type=flag("--workers", integer(1, 1024)),
        metavar="N",
        help="worker processes, 1-1024 (overrides WORKER_PROCESSES; default: CPU count)",
    )


def _run(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.engine.engine import Engine
    from goraxfast.worker.handler import bind_handler

    if args.workers is not None:
        config = config.with_(worker_processes=args.workers)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as gunicorn does: the app's own modules resolve
    try:
        bound = bind_handler(args.handler)  # before forking: a handler that cannot load is
    except HandlerError as exc:  # a mistake of the flag, told in one line
        raise ConfigError([ConfigProblem("--handler", args.handler, str(exc))]) from exc
    engine = Engine(config, bound.func)
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
GROUPS: dict[str, str] = {"queues": "provision SQS queues"}


class UsageError(Exception):
    """argparse's own refusals (unknown command or flag, missing value), as one line."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --wat must not quietly mean --watch
        super().__init__(*args, **kwargs)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse swallows OSError here; a closed stdout must end --help like any output.
        if message:
            (file or sys.stderr).write(message)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {_one_line(message)} (see {self.prog} --help)")


def version() -> str:
    try:
        return importlib.metadata.version("goraxfast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _logging_args(p: argparse.ArgumentParser, *, top: bool) -> None:
    # On the subcommands too (goraxfast run -v); SUPPRESS there, so they do not reset the top's.
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log at INFO level (run: DEBUG)",
    )
    p.add_argument(
        "--log-level",
        type=flag("--log-level", _choice(*LOG_LEVELS)),
        default=default,
        metavar="LEVEL",
        help="one of " + ", ".join(LOG_LEVELS) + " (default: info for run, else warning)",
    )


def build_parser(commands: dict[str, Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="goraxfast",
        description="goraxfast: drain SQS queues of gorax workflow executions, fast.",
        epilog="Settings come from the environment (QUEUE_*, AWS_*, WORKER_*; see the README).",
    )
    parser.add_argument("--version", action="version", version=f"goraxfast {version()}")
    _logging_args(parser, top=True)
    groups: dict[tuple[str, ...], argparse._SubParsersAction[Any]] = {
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
        _logging_args(sub, top=False)
        if command.configure is not None:
            command.configure(sub)
        sub.set_defaults(_command=command, _name=name)
    return parser


def _log_level(args: argparse.Namespace, command: Command) -> int:
    if isinstance(args.log_level, str):
        return int(getattr(logging, args.log_level.upper()))
    if args.verbose:
        return logging.DEBUG if command.log_level == "info" else logging.INFO
    return int(getattr(logging, command.log_level.upper()))


def problems_of(
    args: argparse.Namespace, command: Command, environ: dict[str, str]
) -> tuple[Config | None, list[ConfigProblem]]:
    """The Config, or every mistake at once: flags, then the environment, then what the
    command needs."""
    problems = flag_problems(args)
    if command.check is not None:
        problems += command.check(args)
    config: Config | None = None
    try:
        config = Config.from_env(environ)
    except ConfigError as exc:
        problems += exc.problems
    queue_refused = any(p.name == MISSING_QUEUE.name for p in problems)
    if (
        command.needs_queue
        and not environ.get(MISSING_QUEUE.name, "").strip()
        and not queue_refused
    ):
        problems.append(MISSING_QUEUE)
    return config, problems


def _report(prefix: str, problems: Sequence[ConfigProblem]) -> int:
    for problem in problems:
        _err(f"{prefix}: {_one_line(str(problem))}")
    return EXIT_CONFIG


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    command: Command = args._command
    prefix = f"goraxfast {args._name}"
    config, problems = problems_of(args, command, dict(os.environ))
    if problems or config is None:
        return _report(prefix, problems)
    logging.basicConfig(
        level=_log_level(args, command),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return command.run(args, config)
    except ConfigError as exc:  # found only on the way (the health port in use, a CA bundle)
        return _report(prefix, exc.problems)
    except GoraxfastError as exc:
        _err(f"{prefix}: {_one_line(str(exc))}")
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout (and stderr) at /dev/null, so that the interpreter's last flush of what
    is still buffered cannot fail a second time on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit as exc:  # argparse's --help and --version
            code = exc.code if isinstance(exc.code, int) else EXIT_OK
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
