"""Ack batching: the parent's cost of turning 100 handled messages into DeleteMessageBatch calls.

goraxfast's :class:`~goraxfast.core.acks.AckBatcher` de-duplicates per delivery and flushes by
size or age; the naive alternative appends to a list and slices it. Both end with the request
entries botocore is given, so the comparison includes building them.
"""

from __future__ import annotations

from typing import Any

from goraxfast.core.acks import AckBatcher, AckEntry, AckKind

HANDLES = [f"receipt-handle-{i:04d}-" + "x" * 100 for i in range(100)]


def test_ack_batcher_100(benchmark: Any) -> None:
    def run() -> int:
        batcher = AckBatcher(max_batch=10, max_age_s=0.02)
        calls = 0
        for i, handle in enumerate(HANDLES):
            batcher.add(AckKind.DELETE, AckEntry(i, handle), now=0.0)
            for batch in batcher.due(0.0):
                entries = [
                    {"Id": str(e.key), "ReceiptHandle": e.receipt_handle} for e in batch.entries
                ]
                calls += len(entries) > 0
        return calls

    benchmark.group = "ack 100 messages in batches of 10"
    assert benchmark(run) == 10


def test_list_slicing_100(benchmark: Any) -> None:
    def run() -> int:
        pending: list[tuple[int, str]] = []
        calls = 0
        for i, handle in enumerate(HANDLES):
            pending.append((i, handle))
            if len(pending) == 10:
                entries = [{"Id": str(k), "ReceiptHandle": h} for k, h in pending]
                pending = []
                calls += len(entries) > 0
        return calls

    benchmark.group = "ack 100 messages in batches of 10"
    assert benchmark(run) == 10


def test_one_entry_per_message_100(benchmark: Any) -> None:
    """What a delete-one-by-one consumer builds: 100 request argument dicts (100 calls)."""

    def run() -> int:
        return len([{"QueueUrl": "q", "ReceiptHandle": h} for h in HANDLES])

    benchmark.group = "ack 100 messages in batches of 10"
    assert benchmark(run) == 100
