# mypy: disable-error-code="import-not-found,untyped-decorator,unused-ignore"
"""Contender (d2): dramatiq with dramatiq_sqs (runs in the peers' venv, not ours).

``SQSBroker`` with its defaults and the local endpoint; the CLI runs ``--processes N --threads
8``. The broker deletes each message on its own (``ack`` is one ``DeleteMessage``). Settings
come from ``BENCH_*`` variables because the ``dramatiq`` CLI imports this module by name.
"""

from __future__ import annotations

import json
import os

import dramatiq
from dramatiq_sqs import SQSBroker

from bench.recorder import HandlerSpec, Recorder, do_work, seq_of

QUEUE_NAME = os.environ.get("BENCH_QUEUE_NAME", "bench")
SPEC = HandlerSpec.parse(os.environ.get("BENCH_HANDLER", "noop"))
RECORDER = Recorder(os.environ.get("BENCH_RECORDS", os.devnull))

broker = SQSBroker(
    endpoint_url=os.environ.get("BENCH_ENDPOINT", "http://127.0.0.1:1"),
    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE_NAME, max_retries=0)
def handle(body: str) -> None:
    """The same work as every contender: parse the ExecutionMessage, work, record."""
    msg = json.loads(body)
    do_work(SPEC)
    RECORDER.record(seq_of(msg["execution_id"]))
