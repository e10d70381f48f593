"""The queue administration commands: ``dlq peek``, ``dlq redrive`` and ``queues purge``.

Listed in :data:`goraxfast.cli.commands.COMMANDS` like the others. The two that move or destroy
messages ask first: on a terminal a question (purge: the queue's name typed back), without one
``--yes`` or nothing is done (exit 2, one line), so that a script never purges by accident and
never hangs on a prompt nobody sees.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from goraxfast.cli.flags import flag
from goraxfast.cli.output import err, one_line
from goraxfast.config import MISSING_QUEUE, Config, integer, number
from goraxfast.core.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from goraxfast.core.redrive import (
    MOVE_TASK_MAX_RATE,
    NO_REASON,
    LetterView,
    count_by_reason,
    move_task_unsupported,
    queue_name_of,
)
from goraxfast.errors import ConfigError, SQSError

if TYPE_CHECKING:
    from goraxfast.core.redrive import MoveProgress
    from goraxfast.sqs.admin import Peek, QueueAdmin, RedriveRun

MAX_PEEK = 1000
DEFAULT_PEEK = 100
MAX_REDRIVE = 10_000_000
PURGE_IN_PROGRESS = "PurgeQueueInProgress"
#: A manual redrive's progress line every this many batches.
PROGRESS_EVERY_BATCHES = 10


# --- asking first -------------------------------------------------------------------------------


def stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed
        return False


def ask(prompt: str) -> str:
    """One line typed on the terminal ("" at end of input); the prompt goes to stderr, so that
    stdout stays the command's result."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline().strip()


def confirmed(
    command: str, yes: bool, what: str, prompt: str, expect: tuple[str, ...]
) -> int | None:
    """None to go on; else the exit code (2: no terminal to ask on and no --yes; 1: the answer
    was not one of ``expect``), the reason said in one line."""
    if yes:
        return None
    if not stdin_is_a_terminal():
        err(f"goraxfast {command}: not confirmed: no terminal to ask on; pass --yes to {what}")
        return EXIT_CONFIG
    if ask(prompt) in expect:
        return None
    err(f"goraxfast {command}: not confirmed: nothing done")
    return EXIT_FAILED


# --- dlq peek -----------------------------------------------------------------------------------


def dlq_peek_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max",
        type=flag("--max", integer(1, MAX_PEEK)),
        default=DEFAULT_PEEK,
        metavar="N",
        help=f"letters to read, 1-{MAX_PEEK} (default {DEFAULT_PEEK}); the counts are of these",
    )
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.description = PEEK_DESCRIPTION


PEEK_HELP = "the dead letters on the DLQ with their reasons, and counts by reason"
PEEK_DESCRIPTION = (
    "Show the dead letters on the DLQ (AWS_SQS_DLQ_URL, else the one the main queue's redrive "
    "policy names) with their reasons, and counts by reason over the letters read. Peeking "
    "does not consume: it receives each letter and makes it visible again at once. But it "
    "raises each one's ApproximateReceiveCount, and a redrive (or any consumer of the DLQ) "
    "running at the same time may find them in flight for that moment."
)


def _when(ms: int) -> str:
    if ms <= 0:
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_letter(view: LetterView) -> list[str]:
    lines = [f"{view.message_id}  sent {_when(view.sent_ms)}"]
    lines.append(f"  reason     {one_line(view.reason) if view.reason else NO_REASON}")
    receives = (
        f"received {view.receive_count} times"
        if view.receive_count is not None
        else f"received {view.dlq_receive_count} times on the DLQ"
    )
    if view.source_message_id:
        where = f" on {queue_name_of(view.source_queue)}" if view.source_queue else ""
        lines.append(f"  source     message {view.source_message_id}{where}, {receives}")
    else:
        lines.append(f"  source     unknown, {receives}")
    if view.body_omitted:
        lines.append(
            "  body       omitted (too large for the DLQ; the original stayed on its queue)"
        )
    elif view.execution_id:
        tenant = f" (tenant {view.tenant_id})" if view.tenant_id else ""
        lines.append(f"  execution  {view.execution_id}{tenant}")
    else:
        lines.append(f"  body       {view.body_bytes} bytes, not an execution message")
    return lines


def format_peek(peek: Peek) -> str:
    a = peek.attributes
    lines = [
        f"dlq     {peek.dlq_url}",
        f"  visible     {a.visible}",
        f"  in flight   {a.in_flight}",
        f"  delayed     {a.delayed}",
        f"peeked  {len(peek.letters)} (visible again; each one's receive count went up by one)",
    ]
    if peek.letters:
        lines += ["", "by reason"]
        lines += [f"  {count:6d}  {kind}" for kind, count in count_by_reason(peek.letters)]
        for view in peek.letters:
            lines += ["", *format_letter(view)]
    return "\n".join(lines)


def peek_document(peek: Peek) -> dict[str, object]:
    a = peek.attributes
    return {
        "dlq_url": peek.dlq_url,
        "visible": a.visible,
        "in_flight": a.in_flight,
        "delayed": a.delayed,
        "peeked": len(peek.letters),
        "by_reason": [
            {"reason": kind, "count": count} for kind, count in count_by_reason(peek.letters)
        ],
        "letters": [view.to_dict() for view in peek.letters],
        "unreleased": len(peek.unreleased),
    }


def dlq_peek(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.sqs.admin import QueueAdmin, peek_letters, resolve_dlq

    with QueueAdmin(config) as admin:
        dlq = resolve_dlq(admin, config)
        peek = peek_letters(admin, dlq, args.max)
    if args.json:
        print(json.dumps(peek_document(peek)), flush=True)
    else:
        print(format_peek(peek), flush=True)
    if peek.unreleased:
        err(
            f"goraxfast dlq peek: warning: {len(peek.unreleased)} letters could not be made "
            f"visible again ({one_line(peek.unreleased[0].message)}); they are within 30 s"
        )
    return EXIT_OK


# --- dlq redrive --------------------------------------------------------------------------------


REDRIVE_HELP = "move the dead letters back to the main queue"
REDRIVE_DESCRIPTION = (
    "Move the dead letters back to the main queue (AWS_SQS_QUEUE_URL): by SQS's own message "
    "move task where the server has one for the DLQ, else (or with --manual, or --max) by "
    "receive, send and delete, a batch at a time: only what the main queue accepted is deleted "
    "from the DLQ; refused letters stay there, visible again. Asks first on a terminal; "
    "without one, --yes is required."
)


def dlq_redrive_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max",
        type=flag("--max", integer(1, MAX_REDRIVE)),
        metavar="N",
        help="move at most N letters (by receive, send and delete: SQS's task moves them all)",
    )
    p.add_argument(
        "--rate",
        type=flag("--rate", number(1, MOVE_TASK_MAX_RATE)),
        metavar="N",
        help=f"at most N messages per second, 1-{MOVE_TASK_MAX_RATE} (default: as fast as it goes)",
    )
    p.add_argument(
        "--manual",
        action="store_true",
        help="receive, send and delete even where SQS's move task is available",
    )
    p.description = REDRIVE_DESCRIPTION
    p.add_argument(
        "--yes", action="store_true", help="do not ask first (required without a terminal)"
    )


def dlq_redrive(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.sqs.admin import QueueAdmin, resolve_dlq

    with QueueAdmin(config) as admin:
        dlq = resolve_dlq(admin, config)
        source = config.queue_url
        attrs = admin.queue_attributes(dlq)
        admin.queue_attributes(source)  # a missing main queue: said now, before asking
        dlq_name, source_name = queue_name_of(dlq), queue_name_of(source)
        if attrs.visible == 0:
            print(
                f"nothing to move: {dlq_name} shows no visible messages "
                f"({attrs.in_flight} in flight, {attrs.delayed} delayed)"
            )
            return EXIT_OK
        about = attrs.visible if args.max is None else min(attrs.visible, args.max)
        refused = confirmed(
            "dlq redrive",
            args.yes,
            "move messages",
            f"move about {about} messages from {dlq_name} back to {source_name}? [y/N] ",
            ("y", "yes", "Y", "YES", "Yes"),
        )
        if refused is not None:
            return refused
        if not args.manual and args.max is None:
            done = _redrive_by_task(admin, dlq, source, args.rate)
            if done is not None:
                return done
        return _redrive_by_hand(admin, dlq, source, args.max, args.rate)


def _redrive_by_task(admin: QueueAdmin, dlq: str, source: str, rate: float | None) -> int | None:
    """Move by SQS's message move task; None when the server has none for this queue."""
    from goraxfast.sqs.admin import watch_move_task

    dlq_arn, source_arn = admin.queue_arn(dlq), admin.queue_arn(source)
    try:
        admin.start_move_task(dlq_arn, source_arn, rate)
    except SQSError as exc:
        if not move_task_unsupported(exc.code, exc.detail):
            raise
        # a bare HTTP status (a server without the operation) says more than its error page
        why = exc.code if exc.code and exc.code.isdigit() else one_line(exc.detail)[:120]
        err(
            f"goraxfast dlq redrive: no message move task here ({why}): "
            "moving by receive, send and delete"
        )
        return None
    err(
        f"moving with SQS's message move task from {queue_name_of(dlq)} to "
        f"{queue_name_of(source)} (it goes on if this command is interrupted)"
    )
    last: list[str] = []

    def show(progress: MoveProgress) -> None:
        line = progress.describe()
        if last != [line]:
            err(f"  {line}")
            last[:] = [line]

    progress = watch_move_task(admin, dlq_arn, on_progress=show)
    if not progress.ok:
        err(f"goraxfast dlq redrive: the move task ended {progress.describe()}")
        return EXIT_FAILED
    print(
        f"moved {progress.moved} messages from {queue_name_of(dlq)} to {queue_name_of(source)} "
        "(SQS's message move task)"
    )
    return EXIT_OK


def _redrive_by_hand(
    admin: QueueAdmin, dlq: str, source: str, max_messages: int | None, rate: float | None
) -> int:
    from goraxfast.sqs.admin import redrive_manually

    def progress(run: RedriveRun) -> None:
        if run.batches % PROGRESS_EVERY_BATCHES == 0:
            err(f"  moved {run.tally.moved}")

    run = redrive_manually(
        admin, dlq, source, max_messages=max_messages, rate_per_s=rate, on_batch=progress
    )
    tally = run.tally
    print(
        f"moved {tally.moved} messages from {queue_name_of(dlq)} to {queue_name_of(source)} "
        "(receive, send, delete)"
    )
    for line in tally.summary():
        err(f"goraxfast dlq redrive: left behind: {line}")
    if run.unreleased:
        err(
            f"goraxfast dlq redrive: {len(run.unreleased)} letters left behind could not be made "
            "visible again at once; they are when their 60 s visibility timeout ends"
        )
    if run.error is not None:
        err(f"goraxfast dlq redrive: stopped: {one_line(str(run.error))}")
        return EXIT_FAILED
    return EXIT_OK if tally.complete else EXIT_FAILED


# --- queues purge -------------------------------------------------------------------------------


PURGE_HELP = "delete every message of the main queue or the DLQ"
PURGE_DESCRIPTION = (
    "Delete every message of the main queue (--dlq: of the DLQ) with SQS's PurgeQueue, once "
    "the queue's name is typed back on the terminal; --yes purges without asking, and is "
    "required without a terminal. SQS allows one purge per queue every 60 s."
)


def queues_purge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dlq", action="store_true", help="purge the DLQ instead of the main queue")
    p.description = PURGE_DESCRIPTION
    p.add_argument(
        "--yes", action="store_true", help="do not ask first (required without a terminal)"
    )


def queues_purge(args: argparse.Namespace, config: Config) -> int:
    from goraxfast.sqs.admin import QueueAdmin, resolve_dlq

    if not args.dlq and not config.queue_url:
        raise ConfigError([MISSING_QUEUE])
    with QueueAdmin(config) as admin:
        url = resolve_dlq(admin, config) if args.dlq else config.queue_url
        name = queue_name_of(url)
        a = admin.queue_attributes(url)  # a missing queue: said before asking
        refused = confirmed(
            "queues purge",
            args.yes,
            "purge",
            f"purge {name}: delete its {a.total} messages ({a.visible} visible, {a.in_flight} "
            f"in flight, {a.delayed} delayed) for good? Type the queue's name to confirm: ",
            (name,),
        )
        if refused is not None:
            return refused
        try:
            admin.purge(url)
        except SQSError as exc:
            if PURGE_IN_PROGRESS not in (exc.code or ""):
                raise
            err(
                f"goraxfast queues purge: {name} was purged less than 60 s ago (SQS allows one "
                "PurgeQueue per queue every 60 s): try again in a minute"
            )
            return EXIT_FAILED
    print(
        f"purged {name} (about {a.total} messages); SQS takes up to 60 s to finish, and "
        "deletes what is sent to it meanwhile too"
    )
    return EXIT_OK
