"""Wakeup: the acker's sleep until due or woken, in place of an Event and wait_for."""

from __future__ import annotations

import asyncio

import pytest

from goraxfast.engine.wakeup import Wakeup


async def test_a_set_before_the_wait_is_not_lost() -> None:
    w = Wakeup()
    w.set()
    assert await w.wait(10.0) is True


async def test_a_wait_with_a_timeout_ends_unset_when_nothing_comes() -> None:
    w = Wakeup()
    assert await w.wait(0.01) is False


async def test_a_set_during_the_wait_wakes_it() -> None:
    w = Wakeup()
    waiting = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    w.set()
    assert await asyncio.wait_for(waiting, 1) is True


async def test_clear_forgets_an_earlier_set() -> None:
    w = Wakeup()
    w.set()
    w.clear()
    assert not w.is_set()
    assert await w.wait(0.01) is False


async def test_only_one_task_may_wait() -> None:
    w = Wakeup()
    first = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await w.wait()
    w.set()
    await first


async def test_a_cancelled_wait_leaves_it_usable() -> None:
    w = Wakeup()
    waiting = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    w.set()
    assert await w.wait(1.0) is True
