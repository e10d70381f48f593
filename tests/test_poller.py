"""Credits: pollers receive only for room they have, and only when a full batch fits."""

from __future__ import annotations

import asyncio

from goraxfast.engine.poller import Credits


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
    assert not credits._changed.is_set()  # a wake-up here would be a wasted task switch
    waiter.cancel()
