"""The ``goraxfast`` command: provision queues, publish workloads, watch depth and health.

Every subcommand reads the same environment as the engine (the README's Configuration) through
:meth:`Config.from_env`, so what works here works for ``goraxfast run``. A mistake, in a flag or
in the environment, is never a traceback: every problem is found before anything runs and
printed as one line (the flag or variable, its value, what is allowed), then the command exits
with :data:`EXIT_CONFIG`. A closed stdout (``goraxfast stats | head``) ends the command quietly
with :data:`EXIT_BROKEN_PIPE`.

To add a subcommand, write ``def _cmd(args, config) -> int`` in :mod:`.commands` (and, if it
takes options, a ``def _cmd_args(parser)``) and add one line to its ``COMMANDS``. A name with a space
(``"queues create"``) becomes a nested subcommand. A flag whose value can be wrong gets a
``type=`` from :func:`flag` so that its mistake is reported with all the others.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from goraxfast.cli.commands import COMMANDS, GROUPS, Command
from goraxfast.cli.flags import choice, flag, flag_problems
from goraxfast.cli.output import err as _err
from goraxfast.cli.output import one_line as _one_line
from goraxfast.config import LOG_FORMATS, LOG_LEVELS, MISSING_QUEUE, Config
from goraxfast.core.exit_codes import (
    CLI_EXIT_BROKEN_PIPE,
    CLI_EXIT_INTERRUPTED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
)
from goraxfast.errors import ConfigError, ConfigProblem, GoraxfastError
from goraxfast.ops.logs import JsonFormatter, OneWriteHandler, TextFormatter, package_version
from goraxfast.worker.logcontext import MessageContext

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["COMMANDS", "build_parser", "configure_logging", "log_settings", "main"]

EXIT_INTERRUPTED = CLI_EXIT_INTERRUPTED
EXIT_BROKEN_PIPE = CLI_EXIT_BROKEN_PIPE


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
    return package_version()


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
        type=flag("--log-level", choice(*LOG_LEVELS)),
        default=default,
        metavar="LEVEL",
        help="one of "
        + ", ".join(LOG_LEVELS)
        + " (default: GORAXFAST_LOG_LEVEL, else info for run and warning for the others)",
    )
    p.add_argument(
        "--log-format",
        type=flag("--log-format", choice(*LOG_FORMATS)),
        default=default,
        metavar="FORMAT",
        help="text, or json: one object per line (default: GORAXFAST_LOG_FORMAT, else text)",
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


_LEVEL_STEPS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def log_settings(args: argparse.Namespace, command: Command, config: Config) -> tuple[int, str]:
    """The level and format of the command's log lines: a flag wins over the environment.
    The level is ``--log-level``, else ``GORAXFAST_LOG_LEVEL`` or the command's own and, with
    ``-v``, one step more; the format ``--log-format``, else ``GORAXFAST_LOG_FORMAT``."""
    log_format = args.log_format if isinstance(args.log_format, str) else config.log_format
    if isinstance(args.log_level, str):
        return int(getattr(logging, args.log_level.upper())), log_format
    level = int(getattr(logging, (config.log_level or command.log_level).upper()))
    if args.verbose:
        level = _LEVEL_STEPS[max(_LEVEL_STEPS.index(level) - 1, 0)]
    return level, log_format


class _CommandHandler(OneWriteHandler):
    """The one :func:`configure_logging` installs (and replaces when called again)."""


def configure_logging(level: int, log_format: str) -> logging.Handler:
    """The command's logging: one handler on the root logger, writing each record to stderr in
    one ``write(2)``, with the running message's ids added in workers (which inherit it across
    the fork); Python's warnings go through it too. Only the command calls this: an embedded
    engine leaves its host's logging be. A handler installed by an earlier call is replaced,
    any other one left alone."""
    handler = _CommandHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(MessageContext())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CommandHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a warning is a record too: one line, in the same format
    return handler


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
    configure_logging(*log_settings(args, command, config))
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
