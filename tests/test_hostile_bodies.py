"""No message body can stop the engine (issue 10): hostile bodies mixed into a good workload.

On the real moto server, a queue holds a few hundred good messages and dozens of hostile bodies,
shuffled together. The engine (in process on both data-plane clients, and the real CLI as a
subprocess ended by SIGTERM) must never stop; every good message is handled exactly once; every
hostile one ends in the DLQ, byte for byte, with a ``goraxfast_dlq_reason`` that names the
problem; nothing is left visible or in flight.

Each case records what Go's ``encoding/json`` does with it when unmarshalling into gorax's
struct (``time.Time`` for ``enqueued_at``, ``int`` for the integers, ``json.RawMessage`` for
``trigger_data``), which decides the expected outcome:

- ``HANDLED``: Go accepts it and it passes gorax's validation: the engine must run the handler
  on it, once;
- ``DEAD``: Go refuses it, or gorax's validation does: the engine must dead-letter it;
- ``EITHER``: Go accepts it, but issue 10 lets the engine refuse it (its bounds on nesting,
  number and string sizes, or a difference it documents, such as lone surrogates): exactly one
  of the two, never both, never neither.

Invalid UTF-8 is not among the bodies: SQS only carries valid Unicode (#x9 #xA #xD #x20-#xD7FF
#xE000-#xFFFD #x10000-#x10FFFF) and refuses the message at send, so it cannot reach a consumer
through SQS at all; lone surrogates appear as JSON escapes (``"\\ud800"``), the only way they
can travel.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engine_support import (
    append,
    drain_dlq,
    engine_config,
    engine_env,
    queue_counts,
    trace_lines,
    wait_until,
)

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.engine.engine import Engine, State

GOOD_MESSAGES = 200
HANDLED, DEAD, EITHER = "handled", "dead-lettered", "either"

# What a reason must mention to name the problem.
DEPTH = r"(?i)depth|nest|deep|recursion"
MALFORMED = r"(?i)json|malformed|invalid|unexpected|truncated|character|trailing|decode|pars"
NOT_AN_OBJECT = r"(?i)object|null|array|type"
SURROGATE_IN = r"(?i){}|surrogate"


@dataclass(frozen=True)
class Case:
    label: str
    body: str
    expect: str
    reason: str = ""  # a regex the DLQ reason must match when it is dead-lettered
    go: str = ""  # what Go's encoding/json does with it


def message(label: str, *, extra: str = "", **raw: str | None) -> str:
    """A gorax body with ``execution_id`` = ``label``; each keyword is a field's raw JSON text
    (``None`` leaves the field out); ``extra`` is appended verbatim inside the object."""
    fields: dict[str, str | None] = {
        "execution_id": json.dumps(label),
        "tenant_id": '"hostile"',
        "workflow_id": '"wf"',
        "workflow_version": "1",
        "trigger_type": '"test"',
        "trigger_data": '{"k":1}',
        "enqueued_at": '"2026-01-02T03:04:05.123456789Z"',
    }
    fields.update(raw)
    inner = ",".join(f'"{k}":{v}' for k, v in fields.items() if v is not None)
    return "{" + inner + extra + "}"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def padded(label: str, size: int, *, char: str = "x", **raw: str | None) -> str:
    """A body of exactly ``size`` UTF-8 bytes, padded inside ``trigger_data``."""
    empty = message(label, trigger_data='{"pad":""}', **raw)
    room = size - len(empty.encode())
    per = len(char.encode())
    pad = char * (room // per) + "x" * (room % per)
    body = message(
        label,
        trigger_data=json.dumps({"pad": pad}, ensure_ascii=False, separators=(",", ":")),
        **raw,
    )
    assert len(body.encode()) == size
    return body


def date(label: str, text: str, expect: str, go: str) -> Case:
    return Case(label, message(label, enqueued_at=json.dumps(text)), expect, "enqueued_at", go)


def hostile_cases(max_message_bytes: int) -> list[Case]:
    good = message("x")
    cases = [
        # --- nesting far past 1,000 ---------------------------------------------------------
        Case(
            "nest-trigger-5k",
            message("nest-trigger-5k", trigger_data=nested(5_000)),
            EITHER,
            DEPTH,
            "accepted: under Go's max depth of 10,000",
        ),
        Case(
            "nest-trigger-50k",
            message("nest-trigger-50k", trigger_data=nested(50_000)),
            DEAD,
            DEPTH,
            "exceeded max depth",
        ),
        Case(
            "nest-trigger-objects-50k",
            message("nest-trigger-objects-50k", trigger_data='{"a":' * 50_000 + "1" + "}" * 50_000),
            DEAD,
            DEPTH,
            "exceeded max depth",
        ),
        Case(
            "nest-trigger-unclosed-50k",
            message("nest-trigger-unclosed-50k", trigger_data="[" * 50_000),
            DEAD,
            f"{DEPTH}|{MALFORMED[4:]}",
            "exceeded max depth / invalid",
        ),
        Case(
            "nest-unknown-field-5k",
            message("nest-unknown-field-5k", extra=',"future":' + nested(5_000)),
            EITHER,
            DEPTH,
            "accepted: unknown key skipped, under max depth",
        ),
        Case(
            "nest-unknown-field-50k",
            message("nest-unknown-field-50k", extra=',"future":' + nested(50_000)),
            DEAD,
            DEPTH,
            "exceeded max depth",
        ),
        Case(
            "nest-top-5k",
            nested(5_000),
            DEAD,
            f"{NOT_AN_OBJECT}|{DEPTH[4:]}",
            "cannot unmarshal array into ExecutionMessage",
        ),
        Case(
            "nest-top-50k",
            nested(50_000),
            DEAD,
            f"{NOT_AN_OBJECT}|{DEPTH[4:]}",
            "exceeded max depth",
        ),
        # --- enqueued_at: Go's time.Time.UnmarshalJSON (strict RFC 3339) --------------------
        date("date-year-0", "0000-01-01T00:00:00Z", EITHER, "accepted: year 0000 is in 0-9999"),
        date("date-year-10000", "10000-01-01T00:00:00Z", DEAD, "cannot parse"),
        date(
            "date-zero-time-plus-one",
            "0001-01-01T00:30:00+01:00",
            HANDLED,
            "accepted: what Go writes for the zero time in a +01:00 zone (issue 10)",
        ),
        date(
            "date-last-ns-of-9999",
            "9999-12-31T23:59:59.999999999Z",
            HANDLED,
            "accepted: the last nanosecond Go can write",
        ),
        date("date-first-instant", "0001-01-01T00:00:00Z", HANDLED, "accepted: Go's zero time"),
        date("date-negative-year", "-0001-01-01T00:00:00Z", DEAD, "cannot parse"),
        date("date-month-13", "2024-13-01T00:00:00Z", DEAD, "month out of range"),
        date("date-day-32", "2024-01-32T00:00:00Z", DEAD, "day out of range"),
        date("date-feb-30", "2023-02-30T00:00:00Z", DEAD, "day out of range"),
        date("date-hour-24", "2024-01-01T24:00:00Z", DEAD, "hour out of range"),
        date("date-leap-second", "2016-12-31T23:59:60Z", DEAD, "second out of range"),
        date(
            "date-offset-24h",
            "2024-01-01T00:00:00+24:00",
            EITHER,
            "accepted: time.Parse allows a 24 h offset and the strict RFC 3339 check is disabled",
        ),
        date("date-no-zone", "2024-01-01T00:00:00", DEAD, 'cannot parse "" as "Z07:00"'),
        date("date-space-separator", "2024-01-01 00:00:00Z", DEAD, "cannot parse"),
        date("date-empty", "", DEAD, "cannot parse"),
        date(
            "date-fraction-20-digits",
            "2024-01-01T00:00:00.12345678901234567890Z",
            HANDLED,
            "accepted: digits past the ninth are dropped",
        ),
        date(
            "date-fraction-5000-digits",
            "2024-01-01T00:00:00." + "9" * 5_000 + "Z",
            EITHER,
            "accepted: digits past the ninth are dropped",
        ),
        Case(
            "date-a-number",
            message("date-a-number", enqueued_at="0"),
            DEAD,
            "enqueued_at",
            "Time.UnmarshalJSON: input is not a JSON string",
        ),
        Case(
            "date-null",
            message("date-null", enqueued_at="null"),
            HANDLED,
            "",
            "accepted: null leaves the field unset (issue 10, item 6)",
        ),
        # --- numbers ------------------------------------------------------------------------
        *(
            Case(
                f"version-{name}",
                message(f"version-{name}", workflow_version=text),
                DEAD,
                "workflow_version",
                go,
            )
            for name, text, go in [
                ("1e400", "1e400", "cannot unmarshal number 1e400 into int"),
                ("2pow64", str(2**64), "cannot unmarshal number into int (out of range)"),
                ("2pow63", str(2**63), "cannot unmarshal number into int (out of range)"),
                ("minus-zero", "-0", "accepted as 0, then: must be greater than 0"),
                ("1.0", "1.0", "cannot unmarshal number 1.0 into int"),
                ("1e2", "1e2", "cannot unmarshal number 1e2 into int"),
                ("10000-digits", "9" * 10_000, "cannot unmarshal number into int"),
                ("a-string", '"1"', "cannot unmarshal string into int"),
                ("true", "true", "cannot unmarshal bool into int"),
                ("null", "null", "null leaves 0: must be greater than 0"),
                ("missing", None, "absent leaves 0: must be greater than 0"),
            ]
        ),
        Case(
            "version-nan",
            message("version-nan", workflow_version="NaN"),
            DEAD,
            f"(?i)workflow_version|{MALFORMED[4:]}",
            "invalid character 'N' looking for beginning of value (NaN is not JSON)",
        ),
        Case(
            "version-max-int64",
            message("version-max-int64", workflow_version=str(2**63 - 1)),
            HANDLED,
            "",
            "accepted: the largest Go int",
        ),
        Case(
            "retry-count-10000-digits",
            message("retry-count-10000-digits", retry_count="9" * 10_000),
            DEAD,
            "retry_count",
            "cannot unmarshal number into int",
        ),
        Case(
            "retry-count-null",
            message("retry-count-null", retry_count="null"),
            HANDLED,
            "",
            "accepted: null leaves the field unset (issue 10, item 6)",
        ),
        Case(
            "retry-count-negative",
            message("retry-count-negative", retry_count="-1"),
            HANDLED,
            "",
            "accepted: gorax does not validate retry_count",
        ),
        Case(
            "correlation-id-null",
            message("correlation-id-null", correlation_id="null"),
            HANDLED,
            "",
            "accepted: null leaves the field unset (issue 10, item 6)",
        ),
        Case(
            "trigger-1e400",
            message("trigger-1e400", trigger_data='{"n":1e400}'),
            EITHER,
            r"(?i)trigger_data|number",
            "accepted: RawMessage keeps any valid number",
        ),
        Case(
            "trigger-10000-digits",
            message("trigger-10000-digits", trigger_data='{"n":' + "9" * 10_000 + "}"),
            EITHER,
            r"(?i)trigger_data|number",
            "accepted: RawMessage keeps any valid number",
        ),
        # --- sizes near the queue's MaximumMessageSize --------------------------------------
        Case(
            "size-good-near-max",
            padded("size-good-near-max", max_message_bytes - 4096),
            HANDLED,
            "",
            "accepted",
        ),
        Case(
            "size-good-near-max-multibyte",
            padded("size-good-near-max-multibyte", max_message_bytes - 4096, char="é"),
            HANDLED,
            "",
            "accepted",
        ),
        Case(
            "size-poison-near-max",
            padded("size-poison-near-max", max_message_bytes - 4096, workflow_version="0"),
            DEAD,
            "workflow_version",
            "must be greater than 0",
        ),
        Case(
            "size-poison-1k-under-max",
            padded("size-poison-1k-under-max", max_message_bytes - 1024, workflow_version="0"),
            DEAD,
            "workflow_version",
            "must be greater than 0",
        ),
        # --- lone surrogates, as JSON escapes -----------------------------------------------
        Case(
            "surrogate-high-in-tenant",
            message("surrogate-high-in-tenant", tenant_id='"t\\ud800"'),
            EITHER,
            SURROGATE_IN.format("tenant_id"),
            "accepted: decoded as U+FFFD",
        ),
        Case(
            "surrogate-reversed-pair-in-tenant",
            message("surrogate-reversed-pair-in-tenant", tenant_id='"\\ude00\\ud83d"'),
            EITHER,
            SURROGATE_IN.format("tenant_id"),
            "accepted: each decoded as U+FFFD",
        ),
        Case(
            "surrogate-in-trigger-data",
            message("surrogate-in-trigger-data", trigger_data='{"s":"\\udc00"}'),
            EITHER,
            SURROGATE_IN.format("trigger_data"),
            "accepted: RawMessage is kept as is",
        ),
        Case(
            "surrogate-valid-pair",
            message("surrogate-valid-pair", tenant_id='"\\ud83d\\ude00"'),
            HANDLED,
            "",
            "accepted: U+1F600",
        ),
        # --- every JSON type at the top level -----------------------------------------------
        Case("top-null", "null", DEAD, NOT_AN_OBJECT, "a no-op, then: execution_id is required"),
        Case("top-true", "true", DEAD, NOT_AN_OBJECT, "cannot unmarshal bool"),
        Case("top-number", "1", DEAD, NOT_AN_OBJECT, "cannot unmarshal number"),
        Case("top-string", '"s"', DEAD, NOT_AN_OBJECT, "cannot unmarshal string"),
        Case("top-empty-array", "[]", DEAD, NOT_AN_OBJECT, "cannot unmarshal array"),
        Case(
            "top-array-of-a-message",
            "[" + good + "]",
            DEAD,
            NOT_AN_OBJECT,
            "cannot unmarshal array",
        ),
        Case("top-empty-object", "{}", DEAD, "execution_id", "execution_id is required"),
        # --- required fields empty or missing -----------------------------------------------
        *(
            Case(
                f"empty-{field}",
                message(f"empty-{field}", **{field: '""'}),
                DEAD,
                field,
                f"{field} is required",
            )
            for field in ("execution_id", "tenant_id", "workflow_id", "trigger_type")
        ),
        Case(
            "missing-tenant_id",
            message("missing-tenant_id", tenant_id=None),
            DEAD,
            "tenant_id",
            "tenant_id is required",
        ),
        # --- duplicate keys: Go keeps the last ----------------------------------------------
        Case(
            "dup-tenant-last-wins-good",
            message("dup-tenant-last-wins-good", tenant_id='"","tenant_id":"t"'),
            HANDLED,
            "",
            "accepted: the last tenant_id is t",
        ),
        Case(
            "dup-tenant-last-wins-empty",
            message("dup-tenant-last-wins-empty", tenant_id='"t","tenant_id":""'),
            DEAD,
            "tenant_id",
            "the last tenant_id is empty: tenant_id is required",
        ),
        Case(
            "dup-execution-id",
            '{"execution_id":"decoy",' + message("dup-execution-id")[1:],
            HANDLED,
            "",
            "accepted as dup-execution-id (the last)",
        ),
        # --- not JSON, or not only JSON -----------------------------------------------------
        Case(
            "bom-prefix",
            "\ufeff" + message("bom-prefix"),
            DEAD,
            MALFORMED,
            "invalid character 'ï' looking for beginning of value",
        ),
        Case("whitespace-only", " \t\r\n ", DEAD, MALFORMED, "unexpected end of JSON input"),
        Case(
            "trailing-garbage",
            message("trailing-garbage") + "x",
            DEAD,
            MALFORMED,
            "invalid character 'x' after top-level value",
        ),
        Case(
            "two-messages",
            message("two-messages") + " " + message("two-messages"),
            DEAD,
            MALFORMED,
            "invalid character '{' after top-level value",
        ),
        Case(
            "truncated", message("truncated")[:-1], DEAD, MALFORMED, "unexpected end of JSON input"
        ),
        Case(
            "raw-tab-in-string",
            message("raw-tab-in-string", tenant_id='"a\tb"'),
            DEAD,
            f"(?i)tenant_id|{MALFORMED[4:]}",
            "invalid character '\\t' in string literal",
        ),
        Case(
            "invalid-escape",
            message("invalid-escape", tenant_id='"\\x41"'),
            DEAD,
            f"(?i)tenant_id|{MALFORMED[4:]}",
            "invalid character 'x' in string escape code",
        ),
        Case(
            "single-quotes",
            "{'execution_id': 'single-quotes'}",
            DEAD,
            MALFORMED,
            "invalid character '\\''",
        ),
        # --- odd but good ---------------------------------------------------------------------
        Case(
            "unknown-fields",
            message("unknown-fields", extra=',"future":{"x":[1,2,{}]}'),
            HANDLED,
            "",
            "accepted: unknown keys ignored",
        ),
        Case(
            "unicode-fields",
            message("unicode-fields", tenant_id='"téñant-😀"'),
            HANDLED,
            "",
            "accepted",
        ),
    ]
    labels = Counter(c.label for c in cases)
    bodies = Counter(c.body for c in cases)
    assert max(labels.values()) == 1 and max(bodies.values()) == 1
    return cases


# --- loading the queue ---------------------------------------------------------------------------


@dataclass
class Workload:
    good_ids: list[str]
    cases: list[Case]

    @property
    def total(self) -> int:
        return len(self.good_ids) + len(self.cases)


def load_queue(boto_sqs: Any, queue_url: str, *, seed: int = 10) -> Workload:
    """Good messages and hostile bodies, shuffled together, sent straight to moto in batches of
    ten, so that most receive batches hold both (a poison body must not cost its neighbours)."""
    max_bytes = int(
        boto_sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])[
            "Attributes"
        ]["MaximumMessageSize"]
    )
    cases = hostile_cases(max_bytes)
    good = [good_message(f"good-{i}", i) for i in range(GOOD_MESSAGES)]
    entries = good + [{"MessageBody": c.body} for c in cases]
    random.Random(seed).shuffle(entries)
    batch: list[dict[str, Any]] = []
    for entry in entries:
        if len(entry["MessageBody"].encode()) > 100_000:
            boto_sqs.send_message(QueueUrl=queue_url, **entry)
            continue
        batch.append(entry)
        if len(batch) == 10 or sum(len(e["MessageBody"].encode()) for e in batch) > 150_000:
            send_batch(boto_sqs, queue_url, batch)
            batch = []
    if batch:
        send_batch(boto_sqs, queue_url, batch)
    return Workload([f"good-{i}" for i in range(GOOD_MESSAGES)], cases)


def good_message(execution_id: str, n: int) -> dict[str, Any]:
    """A message as the publisher writes it (body and attributes), as engine_support.publish."""
    msg = ExecutionMessage.new(
        tenant_id=f"tenant-{n % 3}",
        workflow_id="wf",
        workflow_version=1,
        trigger_type="test",
        trigger_data=b'{"n":%d}' % n,
        execution_id=execution_id,
    )
    return {
        "MessageBody": encode_message(msg).decode(),
        "MessageAttributes": msg.message_attributes(),
    }


def send_batch(boto_sqs: Any, queue_url: str, batch: list[dict[str, Any]]) -> None:
    entries = [{"Id": str(i), **e} for i, e in enumerate(batch)]
    resp = boto_sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    assert not resp.get("Failed"), resp["Failed"]  # SQS accepts every one of these bodies


# --- the verdict -----------------------------------------------------------------------------------


#: A poison message's letter and delete are acks, not leased: on a moto slowed by the whole
#: suite they must not outlast the visibility timeout, or a second delivery makes a second letter.
SLOW_SERVER_VISIBILITY_S = 120


def verdict(
    work: Workload,
    handled: list[str],
    letters: list[dict[str, Any]],
    *,
    fatal: BaseException | None,
    state: State | None,
    leftover: tuple[int, int],
) -> None:
    """Check every message's outcome; fail with one line per case that went wrong."""
    problems: list[str] = []
    if fatal is not None:
        problems.append(f"the engine stopped itself: {fatal!r}")
    if state is not None and state is not State.RUNNING:
        problems.append(f"the engine was {state.value} before the test stopped it")
    if leftover != (0, 0):
        problems.append(f"left in the main queue (visible, in flight): {leftover}")
    times = Counter(handled)
    by_body = {c.body: c for c in work.cases}
    dead: dict[str, list[str]] = {}
    # One letter per hostile message; a DLQ send whose answer was lost may be resent once, and
    # every copy carries the same goraxfast_letter_id (README: "Dead letters"), so letters are
    # counted by that id: a second *id* would be a second delivery dead-lettered.
    letter_ids: dict[str, set[str]] = {}
    for letter in letters:
        case = by_body.get(letter["Body"])
        attr = letter.get("MessageAttributes", {}).get("goraxfast_dlq_reason", {})
        reason = attr.get("StringValue", "")
        if case is None:
            good = next((g for g in work.good_ids if f'"{g}"' in letter["Body"]), None)
            problems.append(
                f"good message {good} dead-lettered: {reason!r}"
                if good
                else f"a letter nobody sent: {letter['Body'][:80]!r}"
            )
            continue
        letter_id = letter.get("MessageAttributes", {}).get("goraxfast_letter_id", {})
        dead.setdefault(case.label, []).append(reason)
        letter_ids.setdefault(case.label, set()).add(letter_id.get("StringValue", ""))
    wrong = Counter(times[g] for g in work.good_ids if times[g] != 1)
    if wrong:
        examples = [g for g in work.good_ids if times[g] != 1][:5]
        spread = ", ".join(f"{n} handled {k}x" for k, n in sorted(wrong.items()))
        problems.append(f"good messages not handled exactly once: {spread} (e.g. {examples})")
    for case in work.cases:
        reasons = dead.get(case.label, [])
        ids = letter_ids.get(case.label, set())
        n = times[case.label]
        outcome = f"handled {n}x, dead-lettered {len(ids)}x {sorted(ids)} {reasons!r}"[:400]
        expected_dead = case.expect == DEAD or (case.expect == EITHER and reasons)
        if case.expect == HANDLED and (n != 1 or reasons):
            problems.append(f"{case.label}: expected handled once ({case.go}); {outcome}")
        elif expected_dead and (n or len(ids) != 1 or len(reasons) > 2):
            problems.append(f"{case.label}: expected dead-lettered once ({case.go}); {outcome}")
        elif case.expect == EITHER and not reasons and n != 1:
            problems.append(f"{case.label}: expected handled or dead-lettered, once; {outcome}")
        elif expected_dead and reasons and not re.search(case.reason, reasons[0]):
            problems.append(
                f"{case.label}: dead-lettered with a reason not naming /{case.reason}/: "
                f"{reasons[0]!r}"
            )
    if times["decoy"]:
        problems.append("dup-execution-id was handled under its first execution_id, not its last")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


# --- the engine in process, on both clients ----------------------------------------------------------


@pytest.fixture(params=["botocore", "fast"])
def client_config(config: Config, request: pytest.FixtureRequest) -> Config:
    return config.with_(sqs_client=request.param)


def printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode() or "<empty>"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_no_body_stops_the_engine_good_ones_run_once_hostile_ones_are_dead_lettered(
    client_config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    work = load_queue(boto_sqs, client_config.queue_url)

    def handler(msg):
        append(trace, printable(msg.execution_id))

    cfg = engine_config(client_config, visibility_timeout_s=SLOW_SERVER_VISIBILITY_S)
    async with Engine(cfg, handler) as engine:
        await wait_until(
            lambda: engine.fatal_error is not None or engine.stats().deleted >= work.total,
            timeout_s=240,
            what=f"{work.total} messages handled or dead-lettered",
        )
        fatal, state = engine.fatal_error, engine.state
    verdict(
        work,
        [line[0] for line in trace_lines(trace)],
        drain_dlq(boto_sqs, client_config.dlq_url),
        fatal=fatal,
        state=state,
        leftover=queue_counts(boto_sqs, client_config.queue_url),
    )


# --- the real CLI engine, ended by SIGTERM -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_cli_engine_survives_every_hostile_body_and_exits_0_on_sigterm(
    config: Config, boto_sqs, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    work = load_queue(boto_sqs, config.queue_url)
    at_least_handled = len(work.good_ids) + sum(c.expect == HANDLED for c in work.cases)
    env = engine_env(
        config.aws_endpoint,
        config.queue_url,
        config.dlq_url,
        trace,
        QUEUE_POLLERS="1",
        QUEUE_VISIBILITY_TIMEOUT=str(SLOW_SERVER_VISIBILITY_S),
    )
    log = tmp_path / "engine.log"  # a file, not a pipe nobody reads while it runs
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "goraxfast", "run", "--handler", "cli_handlers:slow"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ends() -> list[str]:
        return [line[1] for line in trace_lines(trace) if line[0] == "end"]

    def drained() -> bool:
        if proc.poll() is not None:
            return True  # it stopped on its own: asserted below, with its log
        if len(ends()) < at_least_handled:
            return False
        return queue_counts(boto_sqs, config.queue_url) == (0, 0)

    try:
        await wait_until(drained, timeout_s=240, what="the queue drained by the CLI engine")
        exited_early = proc.poll()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert exited_early is None, f"the engine exited by itself ({exited_early}):\n{output[-3000:]}"
    assert proc.returncode == 0, output[-3000:]
    verdict(
        work,
        ends(),
        drain_dlq(boto_sqs, config.dlq_url),
        fatal=None,
        state=None,
        leftover=queue_counts(boto_sqs, config.queue_url),
    )
