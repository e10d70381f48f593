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

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from goraxfast.config import Config
from goraxfast.core.deadletter import REASON, SOURCE_MESSAGE_ID
from goraxfast.core.message import ExecutionMessage, decode_message, encode_message
from goraxfast.core.sqs_model import (
    QUEUE_MISSING_CODES,
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_VISIBILITY_S,
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    SendEntry,
    check_batch_size,
    entry_problem,
)
from goraxfast.errors import QueueDoesNotExistError, ReceiptHandleInvalidError, SQSError

__all__ = [
    "DEFAULT_DLQ_URL",
    "DEFAULT_QUEUE_URL",
    "InMemoryQueue",
    "ManualClock",
    "MessageState",
    "Operation",
    "StoredMessage",
]

#: URLs nothing contacts (port 1 on loopback) that :class:`~goraxfast.config.Config` accepts.
DEFAULT_QUEUE_URL = "http://127.0.0.1:1/000000000000/goraxfast-memory"
DEFAULT_DLQ_URL = "http://127.0.0.1:1/000000000000/goraxfast-memory-dlq"

#: The data-plane calls a fault can be scripted for (the method names).
Operation = Literal["receive", "delete_batch", "change_visibility_batch", "send_batch"]
_AWS_NAMES: dict[str, str] = {
    "receive": "ReceiveMessage",
    "delete_batch": "DeleteMessageBatch",
    "change_visibility_batch": "ChangeMessageVisibilityBatch",
    "send_batch": "SendMessageBatch",
}


class MessageState(enum.Enum):
    VISIBLE = "visible"
    IN_FLIGHT = "in flight"  # received, its visibility timeout running
    DELAYED = "delayed"  # sent with a delay not yet over
    DELETED = "deleted"
    REDRIVEN = "redriven"  # moved to the DLQ by ``max_receive_count`` (the redrive policy)


_VISIBLE = MessageState.VISIBLE
_IN_FLIGHT = MessageState.IN_FLIGHT
_DELAYED = MessageState.DELAYED
_DELETED = MessageState.DELETED
_REDRIVEN = MessageState.REDRIVEN
#: The attributes of every message sent without any: one shared, read-only mapping.
_NO_ATTRIBUTES: Mapping[str, dict[str, Any]] = MappingProxyType({})


class ManualClock:
    """A clock that moves only when told: ``InMemoryQueue(clock=clock)``, then ``clock.advance``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the queue (or its DLQ) holds it, at the moment it was asked for."""

    message_id: str
    body: str
    attributes: Mapping[str, Mapping[str, Any]]
    receive_count: int
    state: MessageState
    sent_ms: int
    #: when (on the queue's clock) it is visible again: set while in flight or delayed
    visible_at: float | None = None

    @property
    def reason(self) -> str:
        """Why the engine dead-lettered it (``goraxfast_dlq_reason``); empty if it did not."""
        return str(self.attributes.get(REASON, {}).get("StringValue", ""))

    @property
    def source_message_id(self) -> str:
        """The dead-lettered original's message id (``goraxfast_source_message_id``)."""
        return str(self.attributes.get(SOURCE_MESSAGE_ID, {}).get("StringValue", ""))

    def decode(self) -> ExecutionMessage:
        return decode_message(self.body)


class _Entry:
    """One message of the queue. A slotted class: read and written on every receive, and
    measured faster so than a msgspec Struct (~680 against ~810 ns per message received)."""

    __slots__ = (
        "attributes",
        "body",
        "first_received_ms",
        "handle",
        "message_id",
        "receive_count",
        "sent_ms",
        "state",
        "visible_at",
    )

    def __init__(
        self,
        message_id: str,
        body: bytes,
        attributes: Mapping[str, dict[str, Any]],
        sent_ms: int,
        state: MessageState,
        visible_at: float,
    ) -> None:
        self.message_id = message_id
        self.body = body
        self.attributes = attributes
        self.sent_ms = sent_ms
        self.state = state
        self.visible_at = visible_at
        self.receive_count = 0
        self.first_received_ms = 0
        self.handle = ""

    def view(self) -> StoredMessage:
        return StoredMessage(
            self.message_id,
            self.body.decode("utf-8", "replace"),
            self.attributes,
            self.receive_count,
            self.state,
            self.sent_ms,
            self.visible_at if self.state is _IN_FLIGHT or self.state is _DELAYED else None,
        )


@dataclass(slots=True)
class _Fault:
    code: str | None
    detail: str
    carried_out: bool


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch: SQS's timestamps."""
    return time.time_ns() // 1_000_000


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _sqs_error(operation: str, url: str, detail: str, code: str | None) -> SQSError:
    """The error class a real client raises for ``code``."""
    if code in QUEUE_MISSING_CODES:
        return QueueDoesNotExistError(operation, url, detail, code)
    if code is not None and code.endswith("ReceiptHandleIsInvalid"):
        return ReceiptHandleInvalidError(operation, url, detail, code)
    return SQSError(operation, url, detail, code)


class InMemoryQueue:
    """One SQS queue (and its DLQ) in memory, as a data plane for :class:`~goraxfast.Engine`.

    ``empty_receive_wait_s`` bounds how long a receive on an empty queue waits (SQS long-polls
    for the whole wait time; a short wait here keeps ``engine.stop()``, which lets the long
    polls in flight finish, quick). A publish ends the wait at once.
    """

    def __init__(
        self,
        url: str = DEFAULT_QUEUE_URL,
        *,
        dlq_url: str = DEFAULT_DLQ_URL,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = wall_clock_ms,
        max_receive_count: int | None = None,
        max_message_bytes: int = SQS_DEFAULT_MAX_MESSAGE_BYTES,
        empty_receive_wait_s: float = 0.05,
    ) -> None:
        self.url = url
        self.dlq_url = dlq_url
        self.clock = clock
        self.wall_ms = wall_ms
        self.max_receive_count = max_receive_count
        self.max_message_bytes = max_message_bytes
        self.empty_receive_wait_s = empty_receive_wait_s
        #: calls made, by operation (method name)
        self.calls: dict[str, int] = dict.fromkeys(_AWS_NAMES, 0)
        self.closed = False
        self._messages: dict[str, _Entry] = {}  # every message ever sent here, by id
        self._visible: deque[_Entry] = deque()  # may hold entries no longer visible: skipped
        # Each received message's latest receipt handle, until it is deleted: the messages in
        # flight, and those visible again but not yet received again (their handle still
        # deletes them, as in SQS).
        self._by_handle: dict[str, _Entry] = {}
        self._delayed: dict[str, _Entry] = {}
        self._next_due = math.inf  # nothing in flight or delayed is visible again before this
        self._letters: list[StoredMessage] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._handles = map(str, itertools.count(1))  # receipt handles: "1", "2", ...

    # --- publishing ----------------------------------------------------------------------------

    def config(self, **changes: Any) -> Config:
        """A :class:`~goraxfast.config.Config` for this queue and its DLQ, no HTTP port."""
        return Config(queue_url=self.url, dlq_url=self.dlq_url, health_port=0).with_(**changes)

    def publish(
        self,
        message: ExecutionMessage,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        """Send one message as goraxfast's publisher does (gorax's attributes); its message id."""
        attrs = message.message_attributes() if attributes is None else attributes
        return self.publish_body(encode_message(message), attributes=attrs, delay_s=delay_s)

    def publish_many(self, messages: Iterable[ExecutionMessage]) -> list[str]:
        return [self.publish(m) for m in messages]

    def publish_body(
        self,
        body: bytes | str,
        *,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        delay_s: int = 0,
    ) -> str:
        """Send any body (a poison one, say); raises :class:`SQSError` where SQS would refuse."""
        text = body if isinstance(body, str) else body.decode("utf-8", "surrogateescape")
        problem = entry_problem(SendEntry("0", text, attributes or {}), self.max_message_bytes)
        if problem is not None:
            raise _sqs_error("SendMessage", self.url, problem.message, problem.code)
        raw = body if isinstance(body, bytes) else body.encode()
        return self._store(raw, attributes, delay_s)

    def _store(
        self, body: bytes, attributes: Mapping[str, Mapping[str, Any]] | None, delay_s: int
    ) -> str:
        message_id = str(uuid.uuid4())
        attrs = {k: dict(v) for k, v in attributes.items()} if attributes else _NO_ATTRIBUTES
        if delay_s > 0:
            visible_at = self.clock() + delay_s
            entry = _Entry(message_id, body, attrs, self.wall_ms(), _DELAYED, visible_at)
            self._delayed[message_id] = entry
            self._next_due = min(self._next_due, visible_at)
        else:
            entry = _Entry(message_id, body, attrs, self.wall_ms(), _VISIBLE, 0.0)
            self._visible.append(entry)
        self._messages[message_id] = entry
        if self._waiters:
            self._wake_all()
        return message_id

    # --- scripted faults -----------------------------------------------------------------------

    def fail_next(
        self,
        operation: Operation,
        code: str | None = "InternalError",
        *,
        times: int = 1,
        detail: str = "scripted fault",
        carried_out: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` raise :class:`SQSError` with ``code``.

        ``code=None`` is a transport failure (no answer: the engine reads it as
        ``RequestFailed``, which may have been carried out). With ``carried_out`` the call takes
        effect first and only its answer is lost, as when a connection drops after SQS acted.
        """
        if operation not in _AWS_NAMES:
            raise ValueError(f"no such operation {operation!r}: one of {sorted(_AWS_NAMES)}")
        queue = self._faults.setdefault(operation, deque())
        queue.extend(_Fault(code, detail, carried_out) for _ in range(times))

    def _fault(self, operation: str) -> _Fault | None:
        faults = self._faults.get(operation)
        if not faults:
            return None
        fault = faults.popleft()
        if not faults:
            del self._faults[operation]
        if not fault.carried_out:
            self._raise(operation, fault)
        return fault

    def _raise(self, operation: str, fault: _Fault) -> None:
        raise _sqs_error(_AWS_NAMES[operation], self.url, fault.detail, fault.code)

    # --- the data plane ------------------------------------------------------------------------

    async def receive(
        self,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        *,
        attempt_id: str | None = None,  # a standard queue: SQS ignores it, and so does this
    ) -> list[ReceivedMessage]:
        self.calls["receive"] += 1
        fault = self._fault("receive") if self._faults else None
        if not 1 <= max_messages <= 10:
            text = f"MaxNumberOfMessages must be 1..10, got {max_messages}"
            raise SQSError("ReceiveMessage", self.url, text, "InvalidParameterValue")
        now = self.clock()
        if now >= self._next_due:
            self._sweep(now)
        if wait_time_s > 0 and not self._visible and not self.closed:
            await self._wait(min(wait_time_s, self.empty_receive_wait_s))
            now = self.clock()
            if now >= self._next_due:
                self._sweep(now)
        else:
            await asyncio.sleep(0)  # a real receive always yields to the loop
        out = self._take(max_messages, now + visibility_timeout_s) if self._visible else []
        if fault is not None:
            self._raise("receive", fault)  # carried out: those messages are in flight for nobody
        return out

    def _take(self, n: int, deadline: float) -> list[ReceivedMessage]:
        """Receive up to ``n`` visible messages, in flight until ``deadline``. Called per
        receive with the engine's whole throughput behind it: kept to local names."""
        out: list[ReceivedMessage] = []
        append = out.append
        visible, by_handle = self._visible, self._by_handle
        popleft = visible.popleft
        limit = self.max_receive_count
        wall = self.wall_ms()
        new_handle = self._handles.__next__
        while n and visible:
            e = popleft()
            if e.state is not _VISIBLE:
                continue  # deleted (or redriven) while it was visible again
            count = e.receive_count
            if limit is not None and count >= limit:
                self._redrive(e)
                continue
            e.receive_count = count = count + 1
            first = e.first_received_ms
            if not first:
                e.first_received_ms = first = wall
            handle = new_handle()
            if e.handle:
                del by_handle[e.handle]  # the earlier handle is stale from now on
            e.handle = handle
            by_handle[handle] = e
            e.state = _IN_FLIGHT
            e.visible_at = deadline
            append(
                ReceivedMessage(e.message_id, handle, e.body, count, first, e.sent_ms, e.attributes)
            )
            n -= 1
        if out and deadline < self._next_due:
            self._next_due = deadline
        return out

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        self.calls["delete_batch"] += 1
        fault = self._fault("delete_batch") if self._faults else None
        check_batch_size(entries)
        ok: list[str] = []
        failed: list[BatchFailure] = []
        pop = self._by_handle.pop
        for entry_id, handle in entries:
            e = pop(handle, None)
            if e is None:
                failed.append(_stale(entry_id, handle))
                continue
            e.state = _DELETED  # if it is in the visible deque, it is skipped there
            ok.append(entry_id)
        if fault is not None:
            self._raise("delete_batch", fault)
        return BatchResult(tuple(ok), tuple(failed))

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        self.calls["change_visibility_batch"] += 1
        fault = self._fault("change_visibility_batch") if self._faults else None
        check_batch_size(entries)
        now = self.clock()
        ok: list[str] = []
        failed: list[BatchFailure] = []
        for entry_id, handle, timeout_s in entries:
            e = self._by_handle.get(handle)
            if e is None:
                failed.append(_stale(entry_id, handle))
            elif not 0 <= timeout_s <= SQS_MAX_VISIBILITY_S:
                text = f"visibility timeout {timeout_s} is not 0..{SQS_MAX_VISIBILITY_S}"
                failed.append(BatchFailure(entry_id, "InvalidParameterValue", text, True))
            elif e.state is not _IN_FLIGHT or e.visible_at <= now:
                text = f"message {e.message_id} is not in flight"
                failed.append(BatchFailure(entry_id, "MessageNotInflight", text, True))
            else:
                e.visible_at = now + timeout_s
                if e.visible_at < self._next_due:
                    self._next_due = e.visible_at
                ok.append(entry_id)
        if fault is not None:
            self._raise("change_visibility_batch", fault)
        return BatchResult(tuple(ok), tuple(failed))

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls["send_batch"] += 1
        fault = self._fault("send_batch") if self._faults else None
        check_batch_size(entries)
        if queue_url not in (self.url, self.dlq_url):
            raise QueueDoesNotExistError(
                "SendMessageBatch",
                queue_url,
                "The specified queue does not exist.",
                "AWS.SimpleQueueService.NonExistentQueue",
            )
        ok: list[str] = []
        failed: list[BatchFailure] = []
        ids: dict[str, str] = {}
        for entry in entries:
            problem = entry_problem(entry, self.max_message_bytes)
            if problem is not None:
                failed.append(problem)
                continue
            if queue_url == self.url:
                body = entry.body.encode()
                ids[entry.id] = self._store(body, entry.message_attributes, entry.delay_s)
            else:
                ids[entry.id] = self._letter(entry.body, entry.message_attributes)
            ok.append(entry.id)
        if fault is not None:
            self._raise("send_batch", fault)
        return BatchResult(tuple(ok), tuple(failed), ids)

    async def close(self) -> None:
        """End the receives waiting on an empty queue; later ones return at once."""
        self.closed = True
        self._wake_all()

    # --- inspection ----------------------------------------------------------------------------

    def visible(self) -> list[StoredMessage]:
        """Messages a receive would return now."""
        return self._in_state(_VISIBLE)

    def in_flight(self) -> list[StoredMessage]:
        """Messages received and not yet visible again, deleted or redriven."""
        return self._in_state(_IN_FLIGHT)

    def delayed(self) -> list[StoredMessage]:
        return self._in_state(_DELAYED)

    def deleted(self) -> list[StoredMessage]:
        return self._in_state(_DELETED)

    def dead_letters(self) -> list[StoredMessage]:
        """What was sent to the DLQ URL (the engine's letters) or redriven there, in order."""
        return list(self._letters)

    def message(self, message_id: str) -> StoredMessage:
        """One message of the main queue as it is now (KeyError for an id never sent here)."""
        self._sweep(self.clock())
        return self._messages[message_id].view()

    @property
    def settled(self) -> bool:
        """Nothing visible, in flight or delayed: every message deleted or in the DLQ."""
        self._sweep(self.clock())
        if self._delayed or self._has_visible():
            return False
        return not any(e.state is _IN_FLIGHT for e in self._by_handle.values())

    async def wait_until_settled(self, timeout_s: float = 10.0, poll_s: float = 0.01) -> None:
        """Until :attr:`settled`; TimeoutError (saying what is left) after ``timeout_s``.

        A message retried with a backoff stays in flight for that backoff: give the engine
        short ones (``retry_base_s``) in such tests, or step a :class:`ManualClock`.
        """
        deadline = time.monotonic() + timeout_s
        while not self.settled:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"queue not settled after {timeout_s:g} s: {len(self.visible())} visible, "
                    f"{len(self.in_flight())} in flight, {len(self.delayed())} delayed"
                )
            await asyncio.sleep(poll_s)

    # --- internals -----------------------------------------------------------------------------

    def _in_state(self, state: MessageState) -> list[StoredMessage]:
        self._sweep(self.clock())
        return [e.view() for e in self._messages.values() if e.state is state]

    def _has_visible(self) -> bool:
        visible = self._visible
        while visible and visible[0].state is not _VISIBLE:
            visible.popleft()
        return bool(visible)

    def _sweep(self, now: float) -> None:
        """Make visible again what is due (oldest deadline first); recompute the next one."""
        hidden = [e for e in self._by_handle.values() if e.state is _IN_FLIGHT]
        hidden += self._delayed.values()
        due = sorted((e for e in hidden if e.visible_at <= now), key=_visible_at)
        for e in due:
            if e.state is _DELAYED:
                del self._delayed[e.message_id]
            e.state = _VISIBLE
            self._visible.append(e)
        self._next_due = min(
            (e.visible_at for e in hidden if e.state is not _VISIBLE), default=math.inf
        )

    def _redrive(self, e: _Entry) -> None:
        """The redrive policy: past ``max_receive_count`` receives, moved to the DLQ whole."""
        e.state = _REDRIVEN
        if e.handle:
            del self._by_handle[e.handle]
            e.handle = ""
        self._letter(e.body.decode("utf-8", "replace"), e.attributes, e.message_id)

    def _letter(
        self, body: str, attributes: Mapping[str, Mapping[str, Any]], message_id: str = ""
    ) -> str:
        """Keep a message sent (or moved whole, keeping its id) to the DLQ."""
        message_id = message_id or str(uuid.uuid4())
        attrs = {k: dict(v) for k, v in attributes.items()} if attributes else _NO_ATTRIBUTES
        self._letters.append(StoredMessage(message_id, body, attrs, 0, _VISIBLE, self.wall_ms()))
        return message_id

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    async def _wait(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.remove(waiter)


def _visible_at(e: _Entry) -> float:
    return e.visible_at


def _stale(entry_id: str, handle: str) -> BatchFailure:
    text = f"The receipt handle {handle!r} is not valid: its message was received again or deleted"
    return BatchFailure(entry_id, "ReceiptHandleIsInvalid", text, True)
