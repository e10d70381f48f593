"""An in-memory SQS queue for testing handlers, and the engine itself, without a server.

Why it exists: a handler is best tested the way it runs, in a real :class:`~goraxfast.Engine`
with real forked workers, but without AWS, LocalStack or moto to start. :class:`InMemoryQueue`
is a :class:`~goraxfast.core.dataplane.DataPlane` (the four calls the engine makes) that keeps
the queue in this process and behaves as SQS does where the engine's decisions depend on it,
as dramatiq ships ``StubBroker``:

- a received message is invisible for the visibility timeout, then visible again, and each
  receive counts (``ApproximateReceiveCount``) and gets a new receipt handle;
- a stale receipt handle (from an earlier receive, or of a deleted message) is refused per
  entry with ``ReceiptHandleIsInvalid``, a visibility change on a message no longer in flight
  with ``MessageNotInflight``; the latest handle of a message visible again still deletes it;
- message attributes and the system attributes the engine reads (receive count, first-receive
  and sent timestamps) are kept; sends to the DLQ URL are kept as dead letters; a send to any
  other URL fails as for a queue that does not exist; ``max_receive_count`` plays a redrive
  policy;
- :meth:`InMemoryQueue.fail_next` scripts faults: the next calls of one operation fail with an
  SQS error code (throttling, a server error, a lost answer).

Visibility runs on the ``clock`` given (``time.monotonic`` by default; :class:`ManualClock` in
tests that step time by hand), timestamps on ``wall_ms`` (milliseconds since the epoch). It is
not thread-safe: use it from the engine's event loop, or before the engine starts.

Testing a handler (``tests/test_engine_tasks.py`` runs this one)::

    from goraxfast import Engine, ExecutionMessage
    from goraxfast.testing import InMemoryQueue

    def handle(message: ExecutionMessage) -> None:
        if message.workflow_version < 2:
            raise RuntimeError("workflow version 1 is retired")

    async def test_an_old_workflow_ends_in_the_dlq() -> None:
        queue = InMemoryQueue()
        for version in (1, 2):
            queue.publish(ExecutionMessage.new(tenant_id="t1", workflow_id="w",
                                               workflow_version=version, trigger_type="manual"))
        config = queue.config(worker_processes=1, max_retries=1)  # dead-letter at once
        async with Engine(config, handle, data_plane=queue, serve_http=False):
            await queue.wait_until_settled(timeout_s=10)
        [letter] = queue.dead_letters()  # and both left the queue: queue.deleted()
        assert letter.decode().workflow_version == 1
        assert "workflow version 1 is retired" in letter.reason

``Engine(config, handler, data_plane=queue)`` uses the queue instead of opening an SQS client,
and so skips its SQS preflight (queue checks, the DLQ's size) and the queue-depth metrics.
"""

from goraxfast.testing.clock import ManualClock, wall_clock_ms
from goraxfast.testing.faults import Operation
from goraxfast.testing.memory_queue import DEFAULT_DLQ_URL, DEFAULT_QUEUE_URL, InMemoryQueue
from goraxfast.testing.stored import MessageState, StoredMessage

__all__ = [
    "DEFAULT_DLQ_URL",
    "DEFAULT_QUEUE_URL",
    "InMemoryQueue",
    "ManualClock",
    "MessageState",
    "Operation",
    "StoredMessage",
    "wall_clock_ms",
]
