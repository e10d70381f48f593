# mypy: disable-error-code="import-not-found,untyped-decorator,unused-ignore"
"""Wrap gorax payloads in Celery's or dramatiq's own envelope (runs in the peers' venv).

Reads one payload per line on stdin, writes one SQS message body per line on stdout. The bodies
come from each framework's real publishing code, with only the network call replaced, so its
worker sees exactly what its own publisher would send; the harness then sends them in batches
(neither framework publishes in batches, and pre-filling is not what is measured).

    python -m bench.contenders.peer_bodies celery|dramatiq < payloads > bodies
"""

from __future__ import annotations

import sys
from base64 import b64encode
from typing import Any


def celery_bodies(payloads: list[str]) -> list[str]:
    from kombu.transport.SQS import Channel

    from bench.contenders.celery_app import QUEUE_NAME, app, handle

    captured: list[str] = []

    class CaptureSQS:
        def send_message(self, **kwargs: Any) -> dict[str, str]:
            captured.append(kwargs["MessageBody"])
            return {"MessageId": str(len(captured))}

        def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
            return {"Attributes": {"ApproximateNumberOfMessages": "0"}}

    Channel.sqs = lambda self, queue=None: CaptureSQS()  # type: ignore[method-assign]
    with app.producer_or_acquire() as producer:
        for payload in payloads:
            handle.apply_async(args=(payload,), queue=QUEUE_NAME, producer=producer)
    return captured


def dramatiq_bodies(payloads: list[str]) -> list[str]:
    from bench.contenders.dramatiq_app import handle

    return [b64encode(handle.message(payload).encode()).decode() for payload in payloads]


def main() -> int:
    kind = sys.argv[1]
    payloads = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    wrap = {"celery": celery_bodies, "dramatiq": dramatiq_bodies}[kind]
    out = wrap(payloads)
    if len(out) != len(payloads):
        raise SystemExit(f"{kind}: wrapped {len(out)} of {len(payloads)} payloads")
    sys.stdout.write("".join(body + "\n" for body in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
