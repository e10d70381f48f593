"""The in-memory SQS queue itself: the four data-plane calls, publishing, and inspection.

It keeps one queue and its DLQ in this process and behaves as SQS does where the engine's
decisions depend on it (visibility, receive counts, receipt handles, dead letters, the redrive
policy): the package's docstring (:mod:`goraxfast.testing`) says what it promises and how a
handler is tested with it. Its receive and delete paths carry the engine's whole throughput in
tests and profiles, so they are kept to local names.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from goraxfast.config import Config
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.core.sqs_model import (
    SQS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_VISIBILITY_S,
    BatchFailure,
    BatchResult,
    ReceivedMessage,
    SendEntry,
    check_batch_size,
    entry_problem,
)
from goraxfast.errors import QueueDoesNotExistError, SQSError
from goraxfast.testing.clock import wall_clock_ms
from goraxfast.testing.faults import (
    AWS_NAMES,
    Fault,
    Operation,
    fault_error,
    next_fault,
    script_faults,
    sqs_error,
)
from goraxfast.testing.stored import NO_ATTRIBUTES, Entry, MessageState, StoredMessage

__all__ = ["DEFAULT_DLQ_URL", "DEFAULT_QUEUE_URL", "InMemoryQueue"]

#: URLs nothing contacts (port 1 on loopback) that :class:`~goraxfast.config.Config` accepts.
DEFAULT_QUEUE_URL = "http://127.0.0.1:1/000000000000/goraxfast-memory"
DEFAULT_DLQ_URL = "http://127.0.0.1:1/000000000000/goraxfast-memory-dlq"

_VISIBLE = MessageState.VISIBLE
_IN_FLIGHT = MessageState.IN_FLIGHT
_DELAYED = MessageState.DELAYED
_DELETED = MessageState.DELETED
_REDRIVEN = MessageState.REDRIVEN


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


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
        self.calls: dict[str, int] = dict.fromkeys(AWS_NAMES, 0)
        self.closed = False
        self._messages: dict[str, Entry] = {}  # every message ever sent here, by id
        self._visible: deque[Entry] = deque()  # may hold entries no longer visible: skipped
        # Each received message's latest receipt handle, until it is deleted: the messages in
        # flight, and those visible again but not yet received again (their handle still
        # deletes them, as in SQS).
        self._by_handle: dict[str, Entry] = {}
        self._delayed: dict[str, Entry] = {}
        self._next_due = math.inf  # nothing in flight or delayed is visible again before this
        self._letters: list[StoredMessage] = []
        self._faults: dict[str, deque[Fault]] = {}
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
            raise sqs_error("SendMessage", self.url, problem.message, problem.code)
        raw = body if isinstance(body, bytes) else body.encode()
        return self._store(raw, attributes, delay_s)

    def _store(
        self, body: bytes, attributes: Mapping[str, Mapping[str, Any]] | None, delay_s: int
    ) -> str:
        message_id = str(uuid.uuid4())
        attrs = {k: dict(v) for k, v in attributes.items()} if attributes else NO_ATTRIBUTES
        if delay_s > 0:
            visible_at = self.clock() + delay_s
            entry = Entry(message_id, body, attrs, self.wall_ms(), _DELAYED, visible_at)
            self._delayed[message_id] = entry
            self._next_due = min(self._next_due, visible_at)
        else:
            entry = Entry(message_id, body, attrs, self.wall_ms(), _VISIBLE, 0.0)
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
        script_faults(
            self._faults, operation, code, times=times, detail=detail, carried_out=carried_out
        )

    def _fault(self, operation: str) -> Fault | None:
        fault = next_fault(self._faults, operation)
        if fault is None:
            return None
        if not fault.carried_out:
            self._raise(operation, fault)
        return fault

    def _raise(self, operation: str, fault: Fault) -> None:
        raise fault_error(operation, self.url, fault)

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

    def _redrive(self, e: Entry) -> None:
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
        attrs = {k: dict(v) for k, v in attributes.items()} if attributes else NO_ATTRIBUTES
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


def _visible_at(e: Entry) -> float:
    return e.visible_at


def _stale(entry_id: str, handle: str) -> BatchFailure:
    text = f"The receipt handle {handle!r} is not valid: its message was received again or deleted"
    return BatchFailure(entry_id, "ReceiptHandleIsInvalid", text, True)
