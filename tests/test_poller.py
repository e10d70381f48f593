"""Credits: pollers receive only for room they have, and only when a full batch fits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from goraxfast.core.outage import Outage
from goraxfast.core.sqs_model import BatchResult, ReceivedMessage, SendEntry
from goraxfast.engine.poller import Credits, PollCounters, Poller
from goraxfast.errors import SQSError


async def test_a_poller_waits_for_a_full_batch_of_room_not_for_any_room() -> None:
    held = [15]
    credits = Credits(20, lambda: held[0])
    waiter = asyncio.ensure_future(credits.wait_for_room(10))
    held[0] = 14
    credits.changed()
    await asyncio.sleep(0)
    assert not waiter.done()  # 6 free: a receive now would fetch fewer than 10
    held[0] = 10
    credits.changed()
    await asyncio.wait_for(waiter, 1)


async def test_room_asked_beyond_capacity_means_the_whole_capacity() -> None:
    credits = Credits(4, lambda: 0)
    await asyncio.wait_for(credits.wait_for_room(10), 1)


def test_reservations_never_exceed_the_free_room() -> None:
    credits = Credits(20, lambda: 5)
    assert credits.reserve(10) == 10
    assert credits.reserve(10) == 5
    assert credits.reserve(10) == 0
    credits.give_back(15)
    assert credits.free() == 15


async def test_waiters_of_different_needs_each_wake_when_their_room_is_there() -> None:
    held = [20]
    credits = Credits(20, lambda: held[0])
    small = asyncio.ensure_future(credits.wait_for_room(5))
    large = asyncio.ensure_future(credits.wait_for_room(10))
    await asyncio.sleep(0)
    held[0] = 15
    credits.changed()
    await asyncio.wait_for(small, 1)  # 5 free: enough for the small one
    await asyncio.sleep(0)
    assert not large.done()
    held[0] = 10
    credits.changed()
    await asyncio.wait_for(large, 1)  # not lost although the small one woke first


async def test_a_change_that_frees_too_little_for_any_waiter_does_not_wake_them() -> None:
    held = [20]
    credits = Credits(20, lambda: held[0])
    waiter = asyncio.ensure_future(credits.wait_for_room(10))
    await asyncio.sleep(0)
    held[0] = 19
    credits.changed()
    await asyncio.sleep(0)
    assert not waiter.done() and credits.waiting == 1
    waiter.cancel()


async def waiters_for(credits: Credits, count: int, need: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.ensure_future(credits.wait_for_room(need)) for _ in range(count)]
    await asyncio.sleep(0)  # each is queued now, in order
    return tasks


async def test_room_for_two_batches_wakes_two_of_many_waiters_in_their_order() -> None:
    """Not all of them: the others would find the room taken and sleep again, a task switch
    each on the parent's CPU, per result batch, with up to 128 pollers waiting."""
    held = [100]
    credits = Credits(100, lambda: held[0])
    tasks = await waiters_for(credits, 8, 10)
    held[0] = 80
    credits.changed()
    await asyncio.sleep(0)
    assert [t.done() for t in tasks] == [True, True] + [False] * 6
    assert credits.waiting == 6
    for t in tasks[2:]:
        t.cancel()


async def test_a_cancelled_waiter_leaves_the_queue_and_blocks_no_one() -> None:
    held = [20]
    credits = Credits(20, lambda: held[0])
    first, second = await waiters_for(credits, 2, 10)
    first.cancel()
    await asyncio.sleep(0)
    assert credits.waiting == 1
    held[0] = 10
    credits.changed()
    await asyncio.wait_for(second, 1)


async def test_a_waiter_woken_then_cancelled_passes_its_room_to_the_next() -> None:
    held = [20]
    credits = Credits(20, lambda: held[0])
    first, second = await waiters_for(credits, 2, 10)
    held[0] = 10
    credits.changed()  # room for one: the first is woken ...
    first.cancel()  # ... and cancelled before it runs
    await asyncio.wait_for(second, 1)


async def test_a_capacity_lowered_below_what_a_waiter_asked_lets_it_go_for_the_whole_of_it() -> (
    None
):
    held = [20]
    credits = Credits(20, lambda: held[0])
    [waiter] = await waiters_for(credits, 1, 10)
    held[0] = 0
    credits.resize(6, 10)  # the plan shrank: 10 can never fit again, 6 is the whole room
    await asyncio.wait_for(waiter, 1)


class AttemptPlane:
    """Answers receives from a script (an exception, or a message count); records attempt ids."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.attempt_ids: list[str | None] = []

    async def receive(
        self,
        max_messages: int,
        wait_time_s: int,
        visibility_timeout_s: int,
        *,
        attempt_id: str | None = None,
    ) -> list[ReceivedMessage]:
        self.attempt_ids.append(attempt_id)
        step = self.script.pop(0) if self.script else None
        if step is None:
            await asyncio.Event().wait()  # the script is over: a long poll that never ends
        if isinstance(step, Exception):
            raise step
        return []

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> BatchResult:
        raise NotImplementedError

    async def change_visibility_batch(self, entries: Sequence[tuple[str, str, int]]) -> BatchResult:
        raise NotImplementedError

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        raise NotImplementedError


def lost_answer() -> SQSError:
    return SQSError("ReceiveMessage", "q.fifo", "connection reset")


def refused() -> SQSError:
    return SQSError("ReceiveMessage", "q.fifo", "no", code="AccessDenied")


async def attempt_ids(*script: object, fifo: bool = True) -> list[str | None]:
    plane = AttemptPlane(*script)
    poller = Poller(
        plane,
        Credits(10, lambda: 0),
        lambda messages: None,
        max_messages=10,
        wait_time_s=1,
        visibility_timeout_s=30,
        poll_interval_s=0,
        counters=PollCounters(),
        queue_url="q.fifo",
        outage=Outage("SQS ReceiveMessage", base_s=0.001, cap_s=0.001),
        fifo=fifo,
    )
    task = asyncio.ensure_future(poller.run())
    while len(plane.attempt_ids) < len(script) + 1:
        await asyncio.sleep(0.001)
    task.cancel()
    return plane.attempt_ids


async def test_a_fifo_receive_whose_answer_was_lost_is_retried_with_the_same_attempt_id() -> None:
    ids = await attempt_ids(lost_answer(), lost_answer(), "ok")
    assert ids[0] is not None and ids[0] == ids[1] == ids[2]
    assert ids[3] is not None and ids[3] != ids[0]  # answered: the next receive is a new attempt


async def test_a_refused_fifo_receive_is_not_retried_as_the_same_attempt() -> None:
    ids = await attempt_ids(refused())
    assert ids[0] is not None and ids[1] is not None and ids[0] != ids[1]


async def test_a_standard_queue_receive_carries_no_attempt_id() -> None:
    assert await attempt_ids(lost_answer(), "ok", fifo=False) == [None, None, None]
