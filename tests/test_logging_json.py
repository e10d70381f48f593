"""Log lines for pipelines: one JSON object per line, with the ids of the message a line is
about, from the parent and from its forked workers, never two lines mixed into one.

The formatters, the filter and the handler are checked in-process on real records (a real file
shared by forked processes for the one-write property); then ``goraxfast run`` as a subprocess
against the moto server, with a handler module written into tmp_path.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from goraxfast.config import SETTINGS
from goraxfast.core.message import ExecutionMessage
from goraxfast.core.records import Delivery
from goraxfast.ops.logs import JsonFormatter, OneWriteHandler, TextFormatter, rfc3339_ms
from goraxfast.worker.current import RUNNING
from goraxfast.worker.logcontext import MessageContext

_OWN_PREFIXES = ("AWS_", "QUEUE_", "WORKER_", "GORAXFAST_")


def record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    level: int = logging.INFO,
    exc_info: Any = None,
    extra: dict[str, Any] | None = None,
    name: str = "app.jobs",
    stack: str | None = None,
) -> logging.LogRecord:
    rec = logging.getLogger(name).makeRecord(
        name, level, __file__, 1, msg, args, exc_info, extra=extra, sinfo=stack
    )
    return rec


def as_json(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert isinstance(doc, dict)
    return doc


def running_message() -> tuple[Delivery, ExecutionMessage]:
    delivery = Delivery(3, "msg-123", 2, 0, 0, b"")
    message = ExecutionMessage(
        execution_id="exec-9", tenant_id="t7", workflow_id="w", workflow_version=1, trigger_type="x"
    )
    return delivery, message


# --- the JSON line ----------------------------------------------------------------------------


def test_a_json_line_has_time_level_logger_message_and_pid() -> None:
    doc = as_json(record())

    assert list(doc)[:4] == ["time", "level", "logger", "message"]
    assert (doc["level"], doc["logger"], doc["message"]) == ("INFO", "app.jobs", "hello world")
    assert doc["pid"] == os.getpid()
    assert "message_id" not in doc and "worker" not in doc


def test_the_time_is_rfc3339_utc_with_milliseconds() -> None:
    created = datetime(2025, 3, 4, 5, 6, 7, 89_999, tzinfo=UTC).timestamp()

    assert rfc3339_ms(created) == "2025-03-04T05:06:07.089Z"
    rec = record()
    parsed = datetime.fromisoformat(as_json(rec)["time"].replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - rec.created) < 0.001


def test_a_traceback_is_one_string_field_of_a_one_line_object() -> None:
    try:
        raise ValueError("bad\ninput")
    except ValueError:
        rec = record("failed", (), level=logging.ERROR, exc_info=sys.exc_info())

    doc = as_json(rec)

    assert doc["exc_type"] == "ValueError"
    assert doc["exc_info"].startswith("Traceback (most recent call last):")
    assert doc["exc_info"].endswith("ValueError: bad\ninput")


def test_stack_info_is_one_string_field() -> None:
    doc = as_json(record(stack="Stack (most recent call last):\n  File x"))

    assert doc["stack"] == "Stack (most recent call last):\n  File x"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_extra_fields_are_kept_and_made_json_safe() -> None:
    circular: list[Any] = []
    circular.append(circular)
    extra = {
        "step": "begin",
        "attempt": 2,
        "amount": decimal.Decimal("1.50"),
        "path": Path("/tmp/x"),
        "tags": {"b"},
        "counts": {1: "one"},
        "raw": b"\x00\xff",
        "when": datetime(2025, 1, 2, tzinfo=UTC),
        "big": 2**70,
        "odd": "surrogate \udcff here",
        "loop": circular,
        "unprintable": Unprintable(),
    }

    doc = as_json(record(extra=extra))

    assert doc["step"] == "begin" and doc["attempt"] == 2
    assert doc["amount"] == "1.50" and doc["path"] == "/tmp/x"
    assert doc["tags"] == ["b"] and doc["counts"] == {"1": "one"}
    assert doc["when"].startswith("2025-01-02T00:00:00")
    assert doc["big"] == str(2**70)
    assert "here" in doc["odd"]
    assert doc["loop"] == "[[...]]"
    assert doc["unprintable"] == "<Unprintable>"
    assert doc["message"] == "hello world"


def test_an_extra_field_named_like_a_field_of_the_line_is_kept_beside_it() -> None:
    doc = as_json(record(extra={"time": "noon", "level": 3, "pid": "x", "stack": "s"}))

    assert (doc["extra_time"], doc["extra_level"], doc["extra_pid"]) == ("noon", 3, "x")
    assert doc["extra_stack"] == "s" and doc["level"] == "INFO" and doc["pid"] == os.getpid()


def test_a_log_call_whose_arguments_do_not_fit_still_writes_one_line() -> None:
    doc = as_json(record("%d items", ("many",)))

    assert "'%d items' % ('many',)" in doc["message"]
    assert "TypeError" in doc["message"]


def test_an_extra_field_named_like_an_id_is_the_callers() -> None:
    doc = as_json(record(extra={"message_id": "m-1", "execution_id": "e-1"}))

    assert (doc["message_id"], doc["execution_id"]) == ("m-1", "e-1")


# --- the ids: the filter ----------------------------------------------------------------------


def test_the_filter_adds_the_running_messages_ids() -> None:
    token = RUNNING.set(running_message())
    try:
        rec = record()
        assert MessageContext().filter(rec)
    finally:
        RUNNING.reset(token)

    doc = as_json(rec)

    assert (doc["message_id"], doc["execution_id"], doc["tenant_id"]) == ("msg-123", "exec-9", "t7")
    assert doc["receive_count"] == 2


def test_the_filter_keeps_ids_the_call_gave_itself() -> None:
    token = RUNNING.set(running_message())
    try:
        rec = record(extra={"execution_id": "mine"})
        MessageContext().filter(rec)
    finally:
        RUNNING.reset(token)

    assert rec.execution_id == "mine"  # type: ignore[attr-defined]
    assert rec.message_id == "msg-123"  # type: ignore[attr-defined]


def test_the_filter_adds_nothing_outside_a_handler() -> None:
    rec = record()

    assert MessageContext().filter(rec)
    assert "message_id" not in rec.__dict__ and "worker" not in rec.__dict__


# --- the text line ----------------------------------------------------------------------------


def test_the_text_line_ends_with_the_ids_of_its_message() -> None:
    rec = record(extra={"message_id": "m-1", "execution_id": "e-1", "tenant_id": "t", "worker": 1})

    line = TextFormatter().format(rec)

    assert line.endswith(
        " INFO app.jobs: hello world [message_id=m-1 execution_id=e-1 tenant_id=t worker=1]"
    )


def test_the_text_line_is_todays_when_there_is_no_message() -> None:
    rec = record(extra={"worker": 1})

    assert re.fullmatch(r"\S+ \S+ INFO app\.jobs: hello world", TextFormatter().format(rec))


def test_the_text_line_writes_a_config_mapping_as_key_value_pairs() -> None:
    config = {
        "A": 1,
        "B": 30.0,
        "C": True,
        "D": None,
        "E": "",
        "F": {"t-a": 2, "t-b": 5},
        "G": "two words",
    }

    line = TextFormatter().format(record("engine running", (), extra={"config": config}))

    assert line.endswith('engine running A=1 B=30 C=true D=auto E="" F="t-a=2,t-b=5" G="two words"')


# --- one write per record ---------------------------------------------------------------------


def test_lines_of_forked_processes_sharing_a_file_never_mix(tmp_path: Path) -> None:
    """Four processes write 200 records of 20 KB each to one file description, as a parent and
    its workers share stderr redirected to a file: every line comes back whole."""
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stream = os.fdopen(fd, "w")
    handler = OneWriteHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger("mixing")
    logger.addHandler(handler)
    children = []
    for child in range(4):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for n in range(200):
                    logger.warning("%s", str(child) * 20_000, extra={"n": n})
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0] * 4
    stream.close()

    lines = path.read_bytes().splitlines()
    docs = [orjson.loads(line) for line in lines]
    assert len(docs) == 800
    assert all(doc["message"] == doc["message"][0] * 20_000 for doc in docs)
    assert sorted((doc["message"][0], doc["n"]) for doc in docs) == sorted(
        (str(c), n) for c in range(4) for n in range(200)
    )


def test_a_stream_without_a_descriptor_gets_plain_writes() -> None:
    class Capture:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            raise OSError("no descriptor")

    capture = Capture()
    handler = OneWriteHandler(capture)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    handler.handle(record())

    assert orjson.loads(capture.text)["message"] == "hello world"
    assert capture.text.endswith("}\n")


# --- a real engine --------------------------------------------------------------------------------


def engine_env(sqs_endpoint: str, queue_pair: tuple[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    main_url, dlq_url = queue_pair
    env.update(
        AWS_ENDPOINT=sqs_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_SQS_QUEUE_URL=main_url,
        AWS_SQS_DLQ_URL=dlq_url,
        WORKER_HEALTH_PORT="0",
        QUEUE_WAIT_TIME_SECONDS="1",
        QUEUE_POLL_INTERVAL="0.1",
        GORAXFAST_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def body(execution_id: str, tenant_id: str = "t1") -> str:
    return json.dumps(
        {
            "execution_id": execution_id,
            "tenant_id": tenant_id,
            "workflow_id": "w",
            "workflow_version": 1,
            "trigger_type": "test",
        }
    )


@contextlib.contextmanager
def running(
    env: dict[str, str],
    handler: str,
    *,
    stderr: Any = subprocess.PIPE,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "goraxfast", "run", "--handler", handler],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def stop(proc: subprocess.Popen[str]) -> list[str]:
    """SIGTERM, then every line still to come, until the engine has exited."""
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.readlines() if proc.stderr is not None else []
    assert proc.wait(timeout=60) == 0
    return rest


LOGS_AND_FAILS_ONCE = """
    import logging

    log = logging.getLogger("app.jobs")


    def handle(msg, info):
        log.info("handling %s", msg.execution_id, extra={"step": "begin"})
        if info.receive_count == 1:
            raise ValueError(f"first try fails for {msg.execution_id}")
        log.info("done %s", msg.execution_id)
"""


def test_a_real_run_logs_json_lines_with_the_ids_of_the_handlers_lines_and_its_traceback(
    sqs_endpoint: str, queue_pair: tuple[str, str], boto_sqs: Any, tmp_path: Path
) -> None:
    (tmp_path / "jsonjobs.py").write_text(textwrap.dedent(LOGS_AND_FAILS_ONCE))
    sent = boto_sqs.send_message(QueueUrl=queue_pair[0], MessageBody=body("exec-json"))
    env = engine_env(
        sqs_endpoint,
        queue_pair,
        PYTHONPATH=str(tmp_path),
        WORKER_PROCESSES="1",
        QUEUE_RETRY_BASE_SECONDS="0",  # the failed attempt comes back at once
    )
    lines: list[str] = []
    with running(env, "jsonjobs:handle") as proc:
        assert proc.stderr is not None
        for line in proc.stderr:  # until the second attempt has succeeded (an event)
            lines.append(line)
            if '"message":"done exec-json"' in line:
                break
        lines += stop(proc)

    docs = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid"} <= set(doc) for doc in docs)
    ids = {
        "message_id": sent["MessageId"],
        "execution_id": "exec-json",
        "tenant_id": "t1",
        "worker": 0,
    }
    handling = [d for d in docs if d["message"] == "handling exec-json"]
    assert [d["receive_count"] for d in handling] == [1, 2]
    for doc in handling:
        assert {k: doc[k] for k in ids} == ids
        assert (doc["logger"], doc["level"], doc["step"]) == ("app.jobs", "INFO", "begin")
        assert doc["pid"] != proc.pid  # written by the worker process
    [traceback] = [d for d in docs if d["logger"] == "goraxfast.worker"]
    assert {k: traceback[k] for k in ids} == ids and traceback["receive_count"] == 1
    assert traceback["level"] == "ERROR" and traceback["exc_type"] == "ValueError"
    assert traceback["exc_info"].startswith("Traceback (most recent call last):")
    assert traceback["exc_info"].endswith("ValueError: first try fails for exec-json")
    [start] = [d for d in docs if d["message"].startswith("engine running:")]
    assert start["logger"] == "goraxfast.engine" and start["pid"] == proc.pid
    assert set(start["config"]) == {s.env for s in SETTINGS}
    parents = [d for d in docs if d["pid"] == proc.pid]
    [failed] = [d for d in parents if sent["MessageId"] in d["message"]]  # the failed attempt
    parent_ids = {k: v for k, v in ids.items() if k != "worker"}  # the parent is no worker
    assert {k: failed[k] for k in parent_ids} == parent_ids and failed["receive_count"] == 1


CONCURRENT_LOGGER = """
    import logging
    import os
    import select

    log = logging.getLogger("app.noisy")
    PAD = "x" * 6000  # past PIPE_BUF and past a text stream's own buffer


    def handle(msg, info):
        os.write(int(os.environ["ARRIVED_FD"]), b"a")
        ready, _, _ = select.select([int(os.environ["GO_FD"])], [], [], 30)
        assert ready, "the test never said go"
        for n in range(300):
            log.warning("line %d of %s", n, msg.execution_id, extra={"pad": PAD})
        os.write(int(os.environ["DONE_FD"]), b"d")
"""


def read_bytes(fd: int, count: int, timeout_s: float = 60.0) -> bytes:
    got = b""
    while len(got) < count:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, f"only {len(got)} of {count} bytes within {timeout_s} s"
        chunk = os.read(fd, count - len(got))
        assert chunk, "the engine closed the pipe"
        got += chunk
    return got


def test_two_workers_logging_at_once_write_whole_lines(
    sqs_endpoint: str, queue_pair: tuple[str, str], boto_sqs: Any, tmp_path: Path
) -> None:
    """Both workers held at a barrier, then released together, each writing 300 lines of 6 KB
    into the engine's stderr (a file, as with ``2>>engine.log``): every line parses."""
    (tmp_path / "noisyjobs.py").write_text(textwrap.dedent(CONCURRENT_LOGGER))
    for execution_id in ("exec-a", "exec-b"):
        boto_sqs.send_message(QueueUrl=queue_pair[0], MessageBody=body(execution_id))
    arrived_r, arrived_w = os.pipe()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    env = engine_env(
        sqs_endpoint,
        queue_pair,
        PYTHONPATH=str(tmp_path),
        WORKER_PROCESSES="2",
        QUEUE_MAX_MESSAGES="1",  # one message per receive: dealt one to each worker
        ARRIVED_FD=str(arrived_w),
        GO_FD=str(go_r),
        DONE_FD=str(done_w),
    )
    log_path = tmp_path / "engine.log"
    try:
        with (
            log_path.open("wb") as log_file,
            running(
                env,
                "noisyjobs:handle",
                stderr=log_file,
                pass_fds=(arrived_w, go_r, done_w),
            ) as proc,
        ):
            for fd in (arrived_w, go_r, done_w):
                os.close(fd)
            assert read_bytes(arrived_r, 2) == b"aa"  # both workers are in their handler
            os.write(go_w, b"gg")
            assert read_bytes(done_r, 2) == b"dd"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    finally:
        for fd in (arrived_r, go_w, done_r):
            os.close(fd)

    docs = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    noisy = [d for d in docs if d["logger"] == "app.noisy"]
    assert len(noisy) == 600
    assert {d["worker"] for d in noisy} == {0, 1}
    assert all(d["pad"] == "x" * 6000 for d in noisy)
    by_execution = {
        e: sorted(int(d["message"].split()[1]) for d in noisy if d["execution_id"] == e)
        for e in ("exec-a", "exec-b")
    }
    assert by_execution == {"exec-a": list(range(300)), "exec-b": list(range(300))}


@pytest.fixture(autouse=True)
def _no_leftover_running() -> Iterator[None]:
    yield
    assert RUNNING.get() is None
