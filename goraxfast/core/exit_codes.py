"""Every exit code of the process tree, in one table: the engine (``goraxfast run``), its
workers, the zygote that forks them, and the other CLI commands.

Operators read these from systemd (``RestartPreventExitStatus=``), Kubernetes (a container's
``exitCode``) or a shell; the parent names a dead worker's code with :func:`describe_exit_code`,
so a log line says what happened, not just a number.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXIT_CODES", "ExitCode", "describe_exit_code"]


@dataclass(frozen=True, slots=True)
class ExitCode:
    code: int
    name: str
    process: str  # "engine", "worker", "zygote", "cli"
    meaning: str


# --- the engine: goraxfast run, Engine.run() ------------------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FORCED = 3
EXIT_ACKS_ABANDONED = 4
# --- a worker process ----------------------------------------------------------------------
WORKER_EXIT_OK = 0
WORKER_EXIT_CRASHED = 70
WORKER_EXIT_INIT_FAILED = 71
# --- the zygote ----------------------------------------------------------------------------
ZYGOTE_EXIT_OK = 0
ZYGOTE_EXIT_CRASHED = 1
# --- the other CLI commands ------------------------------------------------------------------
CLI_EXIT_INTERRUPTED = 130
CLI_EXIT_BROKEN_PIPE = 141

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "ok", "engine", "drained cleanly: nothing processed is left undeleted"),
    ExitCode(
        EXIT_FAILED, "failed", "engine", "a fatal error it could not go on from (logged once)"
    ),
    ExitCode(
        EXIT_CONFIG,
        "config",
        "engine",
        "a configuration mistake, found before start or by SQS at start (no such queue, access "
        "denied, credentials refused): restarting cannot fix it",
    ),
    ExitCode(
        EXIT_FORCED,
        "forced",
        "engine",
        "forced by a second signal: running messages were killed and come back through their "
        "visibility timeout",
    ),
    ExitCode(
        EXIT_ACKS_ABANDONED,
        "acks abandoned",
        "engine",
        "stopped, but acknowledgements were left unsent: those messages will run again",
    ),
    ExitCode(WORKER_EXIT_OK, "ok", "worker", "drained, or orphaned before it could start"),
    ExitCode(
        WORKER_EXIT_CRASHED,
        "worker crashed",
        "worker",
        "the worker's own machinery failed (not a handler exception, which is an outcome)",
    ),
    ExitCode(
        WORKER_EXIT_INIT_FAILED,
        "worker_init failed",
        "worker",
        "the user's worker_init raised: the worker cannot start",
    ),
    ExitCode(ZYGOTE_EXIT_OK, "ok", "zygote", "asked to quit, or its parent went away"),
    ExitCode(ZYGOTE_EXIT_CRASHED, "zygote crashed", "zygote", "an error in the zygote itself"),
    ExitCode(EXIT_OK, "ok", "cli", "the command did what it was asked"),
    ExitCode(
        EXIT_FAILED, "failed", "cli", "it ran and failed (SQS refused, messages not published)"
    ),
    ExitCode(EXIT_CONFIG, "config", "cli", "a mistake in a flag or the environment: nothing done"),
    ExitCode(CLI_EXIT_INTERRUPTED, "interrupted", "cli", "Ctrl-C (128 + SIGINT)"),
    ExitCode(
        CLI_EXIT_BROKEN_PIPE,
        "broken pipe",
        "cli",
        "stdout closed by its reader (128 + SIGPIPE, as a shell reports it)",
    ),
)


def describe_exit_code(process: str, code: int) -> str:
    """``exit code 71 (worker_init failed)``; the bare number for a code not in the table."""
    for entry in EXIT_CODES:
        if entry.process == process and entry.code == code:
            return f"exit code {code} ({entry.name})"
    return f"exit code {code}"
