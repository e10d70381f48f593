"""Queue administration on the moto server: ``dlq peek``, ``dlq redrive`` and ``queues purge`` as
real subprocesses, and the manual redrive's loop in-process where a fault must strike between
two of its batches."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
import test_cli
import test_publisher_fifo
from engine_support import engine_config, publish, wait_until
from faultproxy import FaultProxy, Rule

from goraxfast import Reject
from goraxfast.config import Config
from goraxfast.core.deadletter import REASON, DeadLetter, fit_letter
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.sqs_model import send_payload
from goraxfast.engine.engine import Engine
from goraxfast.sqs.admin import QueueAdmin, RedriveRun, peek_letters, redrive_manually

fifo_queue_pair = test_publisher_fifo.fifo_queue_pair


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command with no terminal on stdin (the test runner's own could be one)."""
    return subprocess.run(
        [sys.executable, "-m", "goraxfast", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_on_a_terminal(
    env: dict[str, str], typed: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """The command with a terminal on stdin on which ``typed`` has been typed."""
    main_fd, terminal_fd = pty.openpty()
    try:
        os.write(main_fd, typed.encode() + b"\n")
        return subprocess.run(
            [sys.executable, "-m", "goraxfast", *args],
            env=env,
            stdin=terminal_fd,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(main_fd)
        os.close(terminal_fd)


@pytest.fixture
def env(sqs_endpoint: str, queue_pair: tuple[str, str]) -> dict[str, str]:
    main_url, dlq_url = queue_pair
    return test_cli.cli_env(sqs_endpoint, AWS_SQS_QUEUE_URL=main_url, AWS_SQS_DLQ_URL=dlq_url)


def counts(boto_sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight)."""
    attrs = boto_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def drain(boto_sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a queue, received and deleted (the test's own view)."""
    out: list[dict[str, Any]] = []
    while True:
        batch = boto_sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return out
        out += batch
        boto_sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def put_letters(
    boto_sqs: Any,
    dlq_url: str,
    source_url: str,
    count: int,
    reason: str = "workflow wf was deleted",
    *,
    prefix: str = "e",
    fifo: bool = False,
    groups: int = 1,
    body_bytes: int = 0,
) -> list[str]:
    """Dead letters exactly as the engine writes them (fit_letter); their bodies."""
    bodies = []
    for start in range(0, count, 10):
        entries = []
        for n in range(start, min(count, start + 10)):
            msg = ExecutionMessage.new(
                tenant_id=f"tenant-{n % 3}",
                workflow_id=f"wf-{n % groups}",
                workflow_version=1,
                trigger_type="test",
                execution_id=f"{prefix}{n}",
                trigger_data=b'{"pad": "' + b"x" * body_bytes + b'"}' if body_bytes else None,
            )
            body = encode_message(msg).decode()
            bodies.append(body)
            letter = DeadLetter(
                body=body,
                attributes=msg.message_attributes(),
                reason=reason,
                receive_count=3,
                message_id=f"source-{prefix}{n}",
                source_queue=source_url,
                group_id=f"wf-{n % groups}" if fifo else "",
            )
            entries.append(fit_letter(letter, str(n - start), 1_048_576, fifo=fifo).entry)
        boto_sqs.send_message_batch(QueueUrl=dlq_url, Entries=send_payload(entries))
    return bodies


# --- dlq peek -----------------------------------------------------------------------------------


async def test_peek_shows_what_the_engine_dead_lettered_with_reasons_and_leaves_it_visible(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    ids = publish(boto_sqs, config.queue_url, 4)

    def handler(msg):  # type: ignore[no-untyped-def]
        if int(msg.execution_id[1:]) % 2:
            raise ValueError(f"boom-{msg.execution_id}")
        raise Reject("workflow wf was deleted")

    async with Engine(engine_config(config, max_retries=1), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 4, what="4 dead-lettered")

    done = cli(env, "dlq", "peek", "--json")

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["dlq_url"], doc["visible"], doc["peeked"]) == (config.dlq_url, 4, 4)
    assert doc["by_reason"] == [
        {"reason": "handler failed: ValueError", "count": 2},
        {"reason": "workflow wf was deleted", "count": 2},
    ]
    letters = {d["execution_id"]: d for d in doc["letters"]}
    assert sorted(letters) == sorted(ids)
    assert letters["e1"]["reason"] == "handler failed: ValueError: boom-e1 (attempt 1 of 1)"
    assert letters["e0"]["tenant_id"] == "tenant-0" and letters["e0"]["receive_count"] == 1
    assert all(d["source_message_id"] and d["sent_ms"] > 0 for d in doc["letters"])
    assert counts(boto_sqs, config.dlq_url) == (4, 0)  # all still there, visible at once


def test_peek_in_text_shows_the_counts_then_each_letter(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 3, prefix="a")
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 1, "poison message: bad", prefix="b")
    boto_sqs.send_message(QueueUrl=config.dlq_url, MessageBody="moved by the policy")

    done = cli(env, "dlq", "peek")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"dlq     {config.dlq_url}" in out and "  visible     5" in out
    assert "peeked  5" in out
    by_reason = out.split("by reason\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(None, 1) for line in by_reason] == [
        ["3", "workflow wf was deleted"],
        ["1", "no reason recorded (moved by the queue's redrive policy)"],
        ["1", "poison message"],
    ]
    assert "  execution  a0 (tenant tenant-0)" in out
    assert "  source     message source-a0 on " in out and "received 3 times" in out
    assert "  source     unknown, received 1 times on the DLQ" in out
    assert counts(boto_sqs, config.dlq_url) == (5, 0)


def test_peek_reads_at_most_max_and_counts_those(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 12)

    doc = json.loads(cli(env, "dlq", "peek", "--json", "--max", "5").stdout)

    assert (doc["visible"], doc["peeked"], len(doc["letters"])) == (12, 5, 5)
    assert doc["by_reason"] == [{"reason": "workflow wf was deleted", "count": 5}]
    assert counts(boto_sqs, config.dlq_url) == (12, 0)


def test_peek_finds_the_dlq_through_the_main_queues_redrive_policy(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 2)
    del env["AWS_SQS_DLQ_URL"]

    doc = json.loads(cli(env, "dlq", "peek", "--json").stdout)

    assert doc["dlq_url"] == config.dlq_url and doc["peeked"] == 2


def test_peek_without_any_dlq_to_find_is_one_line_and_exit_2(sqs_endpoint: str) -> None:
    done = cli(test_cli.cli_env(sqs_endpoint), "dlq", "peek")

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "goraxfast dlq peek: AWS_SQS_DLQ_URL='': required (or AWS_SQS_QUEUE_URL, whose redrive "
        "policy names its DLQ)"
    ]


def test_peek_on_a_missing_dlq_is_one_line_naming_it_and_exit_1(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    boto_sqs.delete_queue(QueueUrl=config.dlq_url)

    done = cli(env, "dlq", "peek")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert config.dlq_url in line and "NonExistentQueue" in line


# --- dlq redrive --------------------------------------------------------------------------------


def bodies_of(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(m["Body"] for m in messages)


async def test_redrive_moves_every_dead_letter_of_an_engine_run_back_exactly_once(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    publish(boto_sqs, config.queue_url, 12)

    def handler(msg):  # type: ignore[no-untyped-def]
        raise Reject("not yet")

    async with Engine(engine_config(config), handler) as engine:
        await wait_until(lambda: engine.stats().deleted >= 12, what="12 dead-lettered")
    letters = drain_view(boto_sqs, config.dlq_url)

    done = cli(env, "dlq", "redrive", "--yes")

    assert done.returncode == 0, done.stderr
    # moto has no message move task: the command says so, then moves them by hand
    assert "no message move task here (500): moving by receive, send and delete" in done.stderr
    assert done.stdout.startswith("moved 12 messages from ")
    assert counts(boto_sqs, config.dlq_url) == (0, 0)
    back = drain(boto_sqs, config.queue_url)
    assert bodies_of(back) == bodies_of(letters)
    for m in back:  # as published: the original attributes, none of the letter's
        assert not [name for name in m["MessageAttributes"] if name.startswith("goraxfast_")]
        assert m["MessageAttributes"]["tenant_id"]["StringValue"].startswith("tenant-")


def drain_view(boto_sqs: Any, url: str) -> list[dict[str, Any]]:
    """What a queue holds, read and made visible again (peeked by the test's own client)."""
    seen: dict[str, dict[str, Any]] = {}
    handles = []
    while True:
        batch = boto_sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        for m in batch:
            seen[m["MessageId"]] = m
            handles.append(m["ReceiptHandle"])
    for start in range(0, len(handles), 10):
        boto_sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
    return list(seen.values())


def test_redrive_without_a_terminal_and_without_yes_refuses_and_moves_nothing(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 3)

    done = cli(env, "dlq", "redrive")

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "goraxfast dlq redrive: not confirmed: no terminal to ask on; pass --yes to move messages"
    ]
    assert counts(boto_sqs, config.dlq_url) == (3, 0)
    assert counts(boto_sqs, config.queue_url) == (0, 0)


@pytest.mark.parametrize(("typed", "code", "moved"), [("n", 1, 0), ("", 1, 0), ("y", 0, 3)])
def test_redrive_on_a_terminal_moves_only_when_the_answer_is_yes(
    config: Config, env: dict[str, str], boto_sqs: Any, typed: str, code: int, moved: int
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 3)

    done = cli_on_a_terminal(env, typed, "dlq", "redrive", "--manual")

    assert done.returncode == code, done.stderr
    assert "move about 3 messages from " in done.stderr and "[y/N]" in done.stderr
    assert counts(boto_sqs, config.queue_url) == (moved, 0)
    assert counts(boto_sqs, config.dlq_url) == (3 - moved, 0)


def test_redrive_max_moves_that_many_and_leaves_the_rest(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 15)

    done = cli(env, "dlq", "redrive", "--yes", "--max", "12")

    assert done.returncode == 0, done.stderr
    assert "move task" not in done.stderr  # --max: by hand, SQS's task would move them all
    assert counts(boto_sqs, config.queue_url) == (12, 0)
    assert counts(boto_sqs, config.dlq_url) == (3, 0)


def test_redrive_of_an_empty_dlq_says_so_and_asks_nothing(env: dict[str, str]) -> None:
    done = cli(env, "dlq", "redrive")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nothing to move: ")


def test_a_letter_the_source_queue_refuses_stays_on_the_dlq_visible_and_the_others_move(
    sqs_endpoint: str, config: Config, boto_sqs: Any
) -> None:
    """A DLQ that takes larger messages than its source: one letter cannot go back."""
    small = boto_sqs.create_queue(
        QueueName=f"small-{os.getpid()}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    try:
        fits = put_letters(boto_sqs, config.dlq_url, small, 6, prefix="f")
        (too_big,) = put_letters(boto_sqs, config.dlq_url, small, 1, prefix="big", body_bytes=2000)
        env = test_cli.cli_env(
            sqs_endpoint, AWS_SQS_QUEUE_URL=small, AWS_SQS_DLQ_URL=config.dlq_url
        )

        done = cli(env, "dlq", "redrive", "--yes", "--manual")

        assert done.returncode == 1
        assert done.stdout.startswith("moved 6 messages ")
        (line,) = done.stderr.splitlines()
        assert line.startswith(
            "goraxfast dlq redrive: left behind: 1 refused by the source queue (MessageTooLong: "
        )
        assert line.endswith("bytes, over the limit of 1024 bytes)")
        assert bodies_of(drain(boto_sqs, small)) == Counter(fits)
        assert counts(boto_sqs, config.dlq_url) == (1, 0)  # visible again at once
        assert [m["Body"] for m in drain(boto_sqs, config.dlq_url)] == [too_big]
    finally:
        boto_sqs.delete_queue(QueueUrl=small)


def test_a_send_refused_between_two_batches_loses_and_doubles_nothing(
    sqs_endpoint: str, config: Config, boto_sqs: Any
) -> None:
    bodies = put_letters(boto_sqs, config.dlq_url, config.queue_url, 25)
    with (
        FaultProxy(sqs_endpoint) as proxy,
        QueueAdmin(config.with_(aws_endpoint=proxy.endpoint)) as admin,
    ):

        def refuse_the_next_send(run: RedriveRun) -> None:
            if run.batches == 1:
                proxy.add(Rule.error("SendMessageBatch", 403, "AccessDenied", "no", times=1))

        run = redrive_manually(
            admin, config.dlq_url, config.queue_url, on_batch=refuse_the_next_send
        )

    assert run.error is None and run.tally.moved == 15
    assert run.tally.summary() == [
        "10 refused by the source queue (AccessDenied: SQS SendMessageBatch on "
        f"{config.queue_url} failed [AccessDenied]: no)"
    ]
    on_source, on_dlq = drain(boto_sqs, config.queue_url), drain(boto_sqs, config.dlq_url)
    assert len(on_source) == 15 and len(on_dlq) == 10
    assert bodies_of(on_source) + bodies_of(on_dlq) == Counter(bodies)


def test_a_delete_refused_stops_the_redrive_and_says_what_is_on_both_queues(
    sqs_endpoint: str, config: Config, boto_sqs: Any
) -> None:
    bodies = put_letters(boto_sqs, config.dlq_url, config.queue_url, 20)
    with (
        FaultProxy(sqs_endpoint) as proxy,
        QueueAdmin(config.with_(aws_endpoint=proxy.endpoint)) as admin,
    ):

        def refuse_the_next_delete(run: RedriveRun) -> None:
            proxy.add(Rule.error("DeleteMessageBatch", 403, "AccessDenied", "no"))

        run = redrive_manually(
            admin, config.dlq_url, config.queue_url, on_batch=refuse_the_next_delete, visibility_s=1
        )

    assert run.error is not None and run.error.code == "AccessDenied"
    assert (run.tally.moved, len(run.tally.on_both)) == (10, 10)
    assert "10 were sent to the source queue but could not be deleted" in run.tally.summary()[0]
    on_source = drain(boto_sqs, config.queue_url)
    assert len(on_source) == 20 and bodies_of(on_source) == Counter(bodies)
    # the ten on both queues are still on the DLQ (in flight until their visibility ends)
    assert sum(counts(boto_sqs, config.dlq_url)) == 10


def test_a_fifo_redrive_keeps_each_groups_order_and_a_lost_answer_doubles_nothing(
    sqs_endpoint: str, config: Config, boto_sqs: Any, fifo_queue_pair: tuple[str, str]
) -> None:
    main, dlq = fifo_queue_pair
    bodies = put_letters(boto_sqs, dlq, main, 12, fifo=True, groups=3)
    cfg = config.with_(queue_url=main, dlq_url=dlq)
    with (
        FaultProxy(sqs_endpoint) as proxy,
        QueueAdmin(cfg.with_(aws_endpoint=proxy.endpoint)) as admin,
    ):
        proxy.add(Rule.drop_response("SendMessageBatch", times=1))  # carried out, answer lost
        run = redrive_manually(admin, dlq, main)
        resent = proxy.count("SendMessageBatch")

    assert run.error is None and run.tally.complete and run.tally.moved == 12
    assert resent >= 3  # the unanswered batch was sent again, with the same dedup ids
    back = drain(boto_sqs, main)
    assert bodies_of(back) == Counter(bodies)  # once each
    for group in ("wf-0", "wf-1", "wf-2"):
        in_group = [m["Body"] for m in back if m["Attributes"]["MessageGroupId"] == group]
        assert in_group == [b for b in bodies if f'"workflow_id":"{group}"' in b]
    assert counts(boto_sqs, dlq) == (0, 0)


def test_a_stub_letter_is_never_sent_back_and_stays_on_the_dlq(
    config: Config, boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 2)
    stub = fit_letter(
        DeadLetter("x" * 300_000, {}, "too big", 1, "src-big", config.queue_url), "0", 262_144
    ).entry
    boto_sqs.send_message_batch(QueueUrl=config.dlq_url, Entries=send_payload([stub]))
    with QueueAdmin(config) as admin:
        run = redrive_manually(admin, config.dlq_url, config.queue_url)

    assert run.tally.moved == 2 and len(run.tally.stubs) == 1 and run.tally.complete
    assert counts(boto_sqs, config.queue_url) == (2, 0)
    (left,) = drain(boto_sqs, config.dlq_url)
    assert left["MessageAttributes"][REASON]["StringValue"] == "too big"


def test_a_peek_and_the_admin_calls_of_the_redrive_see_the_same_letters(
    config: Config, boto_sqs: Any
) -> None:
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 7)
    with QueueAdmin(config) as admin:
        peek = peek_letters(admin, config.dlq_url, 100)
        run = redrive_manually(admin, config.dlq_url, config.queue_url)

    assert len(peek.letters) == 7 and not peek.unreleased
    assert {v.message_id for v in peek.letters} == run.tally.deleted


# --- SQS's move task, where a LocalStack is running -----------------------------------------------

LOCALSTACK = os.environ.get("GORAXFAST_TEST_LOCALSTACK_ENDPOINT", "")


@pytest.mark.skipif(
    not LOCALSTACK, reason="GORAXFAST_TEST_LOCALSTACK_ENDPOINT: no LocalStack given"
)
def test_on_localstack_redrive_uses_the_message_move_task_and_moves_every_letter() -> None:
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=LOCALSTACK,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    name = f"admin-{os.getpid()}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    main = sqs.create_queue(
        QueueName=name,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
        },
    )["QueueUrl"]
    try:
        bodies = put_letters(sqs, dlq, main, 25)
        env = test_cli.cli_env(
            LOCALSTACK,
            AWS_SQS_QUEUE_URL=main,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
        )

        done = cli(env, "dlq", "redrive", "--yes", "--rate", "100")

        assert done.returncode == 0, done.stderr
        assert "moving with SQS's message move task" in done.stderr
        assert (
            done.stdout.startswith("moved 25 messages")
            and "(SQS's message move task)" in done.stdout
        )
        assert bodies_of(drain(sqs, main)) == Counter(bodies)
        assert counts(sqs, dlq) == (0, 0)
    finally:
        for url in (main, dlq):
            with contextlib.suppress(Exception):
                sqs.delete_queue(QueueUrl=url)


# --- queues purge -------------------------------------------------------------------------------


def test_purge_without_a_terminal_and_without_yes_refuses_and_purges_nothing(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    publish(boto_sqs, config.queue_url, 3)

    done = cli(env, "queues", "purge")

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "goraxfast queues purge: not confirmed: no terminal to ask on; pass --yes to purge"
    ]
    assert counts(boto_sqs, config.queue_url) == (3, 0)


def test_purge_yes_empties_the_queue_and_a_second_within_60_s_is_one_line_and_exit_1(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    publish(boto_sqs, config.queue_url, 3)

    done = cli(env, "queues", "purge", "--yes")

    assert done.returncode == 0, done.stderr
    name = config.queue_url.rsplit("/", 1)[1]
    assert done.stdout.startswith(f"purged {name} (about 3 messages)")
    assert counts(boto_sqs, config.queue_url) == (0, 0)
    again = cli(env, "queues", "purge", "--yes")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.splitlines() == [
        f"goraxfast queues purge: {name} was purged less than 60 s ago (SQS allows one "
        "PurgeQueue per queue every 60 s): try again in a minute"
    ]


def test_purge_dlq_purges_the_dlq_and_not_the_main_queue(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    publish(boto_sqs, config.queue_url, 2)
    put_letters(boto_sqs, config.dlq_url, config.queue_url, 2)

    done = cli(env, "queues", "purge", "--dlq", "--yes")

    assert done.returncode == 0, done.stderr
    assert counts(boto_sqs, config.dlq_url) == (0, 0)
    assert counts(boto_sqs, config.queue_url) == (2, 0)


@pytest.mark.parametrize(("typed_name", "code", "left"), [(False, 1, 2), (True, 0, 0)])
def test_purge_on_a_terminal_purges_only_when_the_queue_name_is_typed_back(
    config: Config, env: dict[str, str], boto_sqs: Any, typed_name: bool, code: int, left: int
) -> None:
    publish(boto_sqs, config.queue_url, 2)
    name = config.queue_url.rsplit("/", 1)[1]

    done = cli_on_a_terminal(env, name if typed_name else "y", "queues", "purge")

    assert done.returncode == code, done.stderr
    assert f"purge {name}: delete its 2 messages" in done.stderr
    assert counts(boto_sqs, config.queue_url) == (left, 0)


def test_purge_of_a_missing_queue_is_one_line_and_exit_1(
    config: Config, env: dict[str, str], boto_sqs: Any
) -> None:
    boto_sqs.delete_queue(QueueUrl=config.queue_url)

    done = cli(env, "queues", "purge", "--yes")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and config.queue_url in done.stderr
