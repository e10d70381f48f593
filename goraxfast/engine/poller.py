"""Long-pollers: receive only as many messages as the engine has room for.

gorax received faster than it could handle and let messages age in buffers. Here a
poller first reserves credits (free room under the engine's capacity), asks SQS for at most that
many, and gives back what did not arrive. With no room it waits for room; with an empty queue it
costs one long poll at a time, never a busy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from goraxfast.core.dataplane import DataPlane
from goraxfast.core.outage import Outage
from goraxfast.core.sqs_model import (
    AMBIGUOUS_CODES,
    RETRYABLE_CODES,
    SQS_DEDUPLICATION_INTERVAL_S,
    ReceivedMessage,
)
from goraxfast.errors import SQSError

log = logging.getLogger("goraxfast.poller")

#: How long an attempt id is reused for retries: inside SQS's 5 minutes, with a minute to spare.
ATTEMPT_REUSE_S = SQS_DEDUPLICATION_INTERVAL_S - 60

#: How often an intake error that keeps recurring is summed up in one log line.
INTAKE_ERROR_LOG_EVERY_S = 60.0


@dataclass(slots=True)
class PollCounters:
    receives: int = 0
    empty_receives: int = 0
    receive_errors: int = 0
    received: int = 0


class Credits:
    """Room for messages under the engine's capacity, shared by every poller.

    Waiting pollers queue in order, each for the room it asked for, and room wakes only as many
    of them as it fits, first come first served: one shared event would wake all of them (up to
    128 through a real round trip) for each result batch, and all but a few would find the room
    taken and sleep again, a task switch each, on the parent's CPU, per batch.
    """

    def __init__(self, capacity: int, held: Callable[[], int], receive_at_least: int = 10) -> None:
        self.capacity = capacity
        #: The room a poller waits for before it receives (the pipeline's plan sets it).
        self.receive_at_least = receive_at_least
        self._held = held
        self._reserved = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def free(self) -> int:
        return self.capacity - self._held() - self._reserved

    def reserve(self, most: int) -> int:
        take = max(0, min(most, self.free()))
        self._reserved += take
        return take

    def give_back(self, count: int) -> None:
        self._reserved -= count
        self._wake_if_room()

    @property
    def waiting(self) -> int:
        """Pollers waiting for room now: the handlers, not the receives, are the bottleneck."""
        return len(self._waiters)

    def resize(self, capacity: int, receive_at_least: int) -> None:
        """The pipeline's plan changed: a larger capacity may let waiting pollers go, and so
        may a smaller one, below what a waiter asked (it then waits for the whole of it)."""
        self.capacity, self.receive_at_least = capacity, receive_at_least
        self._wake_if_room()

    def changed(self) -> None:
        """Call when held messages went away (a result came back, a message was released)."""
        self._wake_if_room()

    def _wake_if_room(self) -> None:
        """Wake the waiters at the front whose room fits in what is free, in order; each woken
        one is counted against the room, since it will take it when it runs."""
        waiters = self._waiters
        if not waiters:
            return
        room = self.free()
        while waiters:
            need, future = waiters[0]
            if future.done():  # cancelled while waiting
                waiters.popleft()
                continue
            if room < min(need, self.capacity):
                break
            waiters.popleft()
            future.set_result(None)
            room -= need

    async def wait_for_room(self, at_least: int = 1) -> None:
        """Until ``at_least`` messages fit: a receive for one message costs the server as much
        as a receive for ten, so pollers wait for a full batch of room, not for any room (nor
        for more than the capacity, which the plan may lower meanwhile)."""
        while self.free() < (need := max(1, min(at_least, self.capacity))):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (need, future)
            self._waiters.append(entry)
            try:
                await future
            except asyncio.CancelledError:
                if future.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(entry)
                else:
                    self._wake_if_room()  # woken, then cancelled: the room goes to the next
                raise


class Poller:
    def __init__(
        self,
        data_plane: DataPlane,
        credits: Credits,
        on_received: Callable[[Sequence[ReceivedMessage]], None],
        *,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        poll_interval_s: float,
        counters: PollCounters,
        queue_url: str,
        on_intake_error: Callable[[Sequence[ReceivedMessage], BaseException], int] | None = None,
        outage: Outage | None = None,
        rand: Callable[[], float] | None = None,
        on_answer: Callable[[float, float, int, float, int], None] | None = None,
        fifo: bool = False,
    ) -> None:
        self.dp = data_plane
        self.credits = credits
        self.on_received = on_received
        self.max_messages = max_messages
        self.wait_time_s = wait_time_s
        self.visibility_timeout_s = visibility_timeout_s
        self.poll_interval_s = poll_interval_s
        self.counters = counters
        self.queue_url = queue_url
        self.on_intake_error = on_intake_error
        self.outage = outage if outage is not None else Outage("SQS ReceiveMessage")
        self.rand = rand or random.random
        #: (now, round trip, messages, long-poll wait, asked) of every answered receive
        self.on_answer = on_answer
        #: A FIFO queue: each receive carries a ReceiveRequestAttemptId, reused to retry one whose
        #: answer was lost, so SQS returns that batch again instead of hiding its groups.
        self.fifo = fifo
        self._attempt_id: str | None = None
        self._attempt_since = 0.0
        self.stopping = False
        self.receiving = False
        # error (type, text) -> [time of its last line, batches and messages since]
        self._intake_errors: dict[tuple[type[BaseException], str], list[float]] = {}

    async def run(self) -> None:
        """Receive until :meth:`stop` (or cancelled while no receive is in flight).

        A long poll is never abandoned by choice: SQS completes it whether or not anyone still
        listens, and what it returns would stay invisible to every consumer for the visibility
        timeout. So a stopping poller lets its receive finish and hands what it brings to the
        dispatcher, which releases it at once.
        """
        loop = asyncio.get_running_loop()
        outage = self.outage
        while not self._stopped():
            await self.credits.wait_for_room(min(self.max_messages, self.credits.receive_at_least))
            if self._stopped():
                return
            want = self.credits.reserve(self.max_messages)
            if want == 0:
                continue
            self.receiving = True
            sent_at = time.monotonic()  # not loop.time(): uvloop's is cached, in ms
            try:
                if self.fifo:
                    messages = await self.dp.receive(
                        want,
                        self.wait_time_s,
                        self.visibility_timeout_s,
                        attempt_id=self._attempt(sent_at),
                    )
                    self._attempt_id = None  # answered: the next receive is a new attempt
                else:
                    messages = await self.dp.receive(
                        want, self.wait_time_s, self.visibility_timeout_s
                    )
            except asyncio.CancelledError:
                self.credits.give_back(want)
                raise
            except Exception as exc:
                self.credits.give_back(want)
                self.counters.receive_errors += 1
                if not _maybe_carried_out(exc):
                    self._attempt_id = None  # refused: SQS returned nothing to ask again for
                if self._stopped():
                    return
                failure = outage.failed(loop.time(), _error_kind(exc), _describe(exc), self.rand())
                if failure.line is not None:
                    log.warning("%s (queue %s)", failure.line, self.queue_url)
                await asyncio.sleep(failure.delay_s)
                continue
            finally:
                self.receiving = False
            if outage.failing:
                recovered = outage.succeeded(loop.time())
                if recovered is not None:
                    log.warning("%s (queue %s)", recovered, self.queue_url)
            self.counters.receives += 1
            self.credits.give_back(want)
            if self.on_answer is not None:
                now = time.monotonic()
                self.on_answer(now, now - sent_at, len(messages), self.wait_time_s, want)
            if messages:
                self.counters.received += len(messages)
                try:
                    self.on_received(messages)
                except Exception as exc:
                    self._intake_failed(messages, exc)
            else:
                self.counters.empty_receives += 1
                if self.poll_interval_s > 0 and not self._stopped():
                    await asyncio.sleep(self.poll_interval_s)

    def _attempt(self, now: float) -> str:
        """The ReceiveRequestAttemptId of this receive: the last one again while it is retrying
        a receive that got no answer (SQS keeps an attempt id 5 minutes), else a new one."""
        if self._attempt_id is None or now - self._attempt_since > ATTEMPT_REUSE_S:
            self._attempt_id = uuid.uuid4().hex
            self._attempt_since = now
        return self._attempt_id

    def _stopped(self) -> bool:
        return self.stopping  # a call: mypy would take the flag as fixed across awaits

    def stop(self) -> bool:
        """No new receive from now on; True while one is still in flight (let it finish)."""
        self.stopping = True
        self.credits.changed()  # a poller waiting for room must see that it is stopping
        return self.receiving

    def _intake_failed(self, messages: Sequence[ReceivedMessage], exc: Exception) -> None:
        """A bug between receive and dispatch: the batch is settled, the poller polls on.

        Without this the poller task would end, the engine would stop, and the batch would stay
        in flight to nobody until its visibility timeout, on every restart. The first batch an
        error hits is logged with its message ids and the traceback; if the same error keeps
        coming, one line every :data:`INTAKE_ERROR_LOG_EVERY_S` counts the batches and
        messages since (a bug that repeats must not fill the log).
        """
        settled = self.on_intake_error(messages, exc) if self.on_intake_error else 0
        key = (type(exc), str(exc)[:200])
        now = asyncio.get_running_loop().time()
        seen = self._intake_errors.get(key)
        if seen is None:
            if len(self._intake_errors) < 100:
                self._intake_errors[key] = [now, 0, 0]
            log.error(
                "bug: taking a receive batch from %s failed (%s: %s); %d of its %d messages "
                "released for a retry or dead-lettered, the poller goes on; message ids: %s",
                self.queue_url,
                type(exc).__name__,
                exc,
                settled,
                len(messages),
                ", ".join(m.message_id for m in messages),
                exc_info=exc,
            )
            return
        seen[1] += 1
        seen[2] += len(messages)
        if now - seen[0] >= INTAKE_ERROR_LOG_EVERY_S:
            log.error(
                "bug: %s: %s again for %d receive batches (%d messages) from %s in the last "
                "%.0f s; each was released for a retry or dead-lettered",
                type(exc).__name__,
                exc,
                seen[1],
                seen[2],
                self.queue_url,
                now - seen[0],
            )
            seen[:] = [now, 0, 0]


def _maybe_carried_out(exc: Exception) -> bool:
    """A receive that may have taken messages out of sight: no answer, or a server error."""
    if not isinstance(exc, SQSError):
        return True
    code = exc.code or ""
    return not code or code in AMBIGUOUS_CODES or code in RETRYABLE_CODES


def _error_kind(exc: Exception) -> str:
    """What makes one failure different from the last: the AWS code, else the exception type
    (for a transport error, the type botocore or the fast client named in the detail)."""
    if isinstance(exc, SQSError):
        return exc.code or exc.detail.split(":", 1)[0]
    return type(exc).__name__


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SQSError) else f"{type(exc).__name__}: {exc}"
