# mypy: disable-error-code="import-not-found,untyped-decorator,unused-ignore"
"""Contender (d1): Celery with kombu's SQS transport (runs in the peers' venv, not ours).

Configured as kombu documents for SQS: broker ``sqs://KEY:SECRET@host:port``, ``region``,
``is_secure: False`` for the local endpoint, the bench queue in ``predefined_queues``, and
``polling_interval: 0``, kombu's documented long-polling setting (with its default of 1 s a
worker drained ~8 msg/s here). Everything else is Celery's default
(prefork pool, prefetch multiplier 4, early acks). Settings come from ``BENCH_*`` variables
because the ``celery`` CLI imports this module by name.
"""

from __future__ import annotations

import json
import os

from celery import Celery

from bench.recorder import HandlerSpec, Recorder, do_work, seq_of

QUEUE_NAME = os.environ.get("BENCH_QUEUE_NAME", "bench")
QUEUE_URL = os.environ.get("BENCH_QUEUE_URL", "http://127.0.0.1:1/000000000000/bench")
ENDPOINT = os.environ.get("BENCH_ENDPOINT", "http://127.0.0.1:1")
KEY = os.environ.get("AWS_ACCESS_KEY_ID", "bench")
SECRET = os.environ.get("AWS_SECRET_ACCESS_KEY", "bench")
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
SPEC = HandlerSpec.parse(os.environ.get("BENCH_HANDLER", "noop"))
RECORDER = Recorder(os.environ.get("BENCH_RECORDS", os.devnull))

app = Celery("bench", broker=f"sqs://{KEY}:{SECRET}@{ENDPOINT.split('://', 1)[1]}")
app.conf.update(
    broker_transport_options={
        "region": REGION,
        "is_secure": ENDPOINT.startswith("https"),
        "polling_interval": 0,
        "predefined_queues": {
            QUEUE_NAME: {"url": QUEUE_URL, "access_key_id": KEY, "secret_access_key": SECRET}
        },
    },
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE_NAME,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.handle")
def handle(body: str) -> None:
    """The same work as every contender: parse the ExecutionMessage, work, record."""
    msg = json.loads(body)
    do_work(SPEC)
    RECORDER.record(seq_of(msg["execution_id"]))
