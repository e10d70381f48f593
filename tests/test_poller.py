"""Credits: pollers receive only for room they have, and only when a full batch fits."""

from __future__ import annotations

import asyncio

from goraxfast.poller import Credits


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
