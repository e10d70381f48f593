"""The order of a FIFO queue's message groups, for the messages an engine holds.

SQS delivers a FIFO queue's group in order and, while one of its messages is in flight, none
after it; but one receive may bring several messages of a group, and a failed message goes back
to the queue while later ones of its group may already be held here. :class:`GroupOrder` keeps,
per group, the held messages in the order SQS delivered them, and says which one may run:

- **one at a time, in delivery order**: only the earliest held message of a group (its *head*)
  is runnable; the others wait behind it;
- **for good or back to SQS**: a message that leaves the queue for good (its handler succeeded,
  or it was dead-lettered) lets the next of its group run (:meth:`~GroupOrder.succeeded`); a
  message that goes back to SQS (a failed attempt, :meth:`~GroupOrder.failed`; a release,
  :meth:`~GroupOrder.forget`) takes every later held message of its group with it, to be
  released unrun (visibility 0). SQS keeps a group blocked while one of its messages is
  invisible and gives a released message back in its own place, so they come back after it, in
  order. Keeping them here instead would let them run ahead of it.

The rule knows nothing of SQS calls, leases, workers or time: keys are the engine's slots (any
hashable), groups are MessageGroupId strings.

Why :meth:`~GroupOrder.forget` acts as :meth:`~GroupOrder.failed` does on the rest of the group,
head or not: a message taken out without an outcome may come back from SQS (a release at
shutdown or past a throttle bound, a poison message whose dead letter is not sent yet). Any later
message of its group kept here could then run before it does, so they go back too, and earlier
ones stay (nothing they do depends on a later message). That is always safe; it costs only the
redelivery of the later messages. A message that will never run (poison) need not enter the order
at all; one that leaves for good without having run (dead-lettered at intake) may leave through
:meth:`~GroupOrder.succeeded`, which then changes nothing for the others, since it was not the
head.

Cost per message: ``arrive`` + ``succeeded`` are a few dict operations, plus a deque append and
pop for a message that waits (``bench/test_micro_ordering.py``: well under a microsecond).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, KeysView
from typing import Generic, TypeVar

__all__ = ["GroupOrder"]

K = TypeVar("K", bound=Hashable)


class GroupOrder(Generic[K]):
    """Per group, the held messages in delivery order; only the earliest of each may run.

    Every key that arrives leaves exactly once, through :meth:`succeeded`, :meth:`failed`,
    :meth:`forget`, or in the list one of the latter two returns. A key is held again only after
    it left (an engine reuses its slots).
    """

    __slots__ = ("_group_of", "_heads", "_waiters")

    def __init__(self) -> None:
        self._group_of: dict[K, str] = {}
        #: group -> its earliest held key (runnable); a group is held while it has a head
        self._heads: dict[str, K] = {}
        #: group -> the keys behind its head, in delivery order (only groups that have some: a
        #: group of one message, the usual case with many groups, costs no deque)
        self._waiters: dict[str, deque[K]] = {}

    def arrive(self, key: K, group: str) -> bool:
        """A message received, in SQS's delivery order: True when it may run now (no earlier
        message of its group is held), else it waits behind them."""
        if key in self._group_of:
            raise ValueError(f"key {key!r} is already held (in group {self._group_of[key]!r})")
        self._group_of[key] = group
        if group not in self._heads:
            self._heads[group] = key
            return True
        waiters = self._waiters.get(group)
        if waiters is None:
            self._waiters[group] = deque((key,))
        else:
            waiters.append(key)
        return False

    def succeeded(self, key: K) -> K | None:
        """``key`` left for good: its handler succeeded, or it was dead-lettered. The next of
        its group, now runnable, or None. A key that was not runnable (dead-lettered without
        having run) simply leaves: the head of its group is unchanged, and None is returned."""
        group = self._group_of.pop(key)
        if self._heads[group] != key:
            behind = self._waiters[group]
            behind.remove(key)
            if not behind:
                del self._waiters[group]
            return None
        waiters = self._waiters.get(group)
        if waiters is None:
            del self._heads[group]
            return None
        following = waiters.popleft()
        if not waiters:
            del self._waiters[group]
        self._heads[group] = following
        return following

    def failed(self, key: K) -> list[K]:
        """An attempt of the runnable ``key`` failed and it goes back to SQS (retry, timeout,
        crashed worker): it leaves, and so does every later held message of its group, returned
        in order, to be released to SQS unrun. ValueError if ``key`` was not runnable (a message
        that never ran cannot have failed an attempt: use :meth:`forget`)."""
        group = self._group_of.get(key)
        if group is None:
            raise KeyError(key)
        if self._heads[group] != key:
            raise ValueError(f"key {key!r} is not runnable: it waits behind an earlier message")
        return self.forget(key)

    def forget(self, key: K) -> list[K]:
        """``key`` is taken out without an outcome (a release, shutdown, a message whose fate is
        not known yet): it leaves with every later held message of its group, returned in
        order, to be released unrun; earlier ones stay as they are (see the module's text)."""
        group = self._group_of.pop(key)
        waiters = self._waiters.get(group)
        if self._heads[group] == key:
            del self._heads[group]
            if waiters is None:
                return []
            del self._waiters[group]
            later = list(waiters)
        else:
            assert waiters is not None  # a key that is not the head waits behind it
            at = waiters.index(key)
            later = [waiters[i] for i in range(at + 1, len(waiters))]
            for _ in range(len(waiters) - at):
                waiters.pop()
            if not waiters:
                del self._waiters[group]
        for other in later:
            del self._group_of[other]
        return later

    # --- introspection ------------------------------------------------------------------------

    def is_runnable(self, key: K) -> bool:
        """Whether ``key`` is the earliest held message of its group. KeyError if not held."""
        return self._heads[self._group_of[key]] == key

    def group_of(self, key: K) -> str:
        return self._group_of[key]

    def waiting(self, group: str) -> list[K]:
        """The held messages of ``group`` behind its runnable one, in delivery order."""
        return list(self._waiters.get(group, ()))

    def groups(self) -> KeysView[str]:
        """The groups with a held message (each has exactly one runnable)."""
        return self._heads.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._group_of

    def __len__(self) -> int:
        """Messages held, runnable or waiting."""
        return len(self._group_of)
