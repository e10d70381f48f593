"""The log budget of a worker's handler tracebacks: a token bucket, and one summary of the rest.

Each scenario is a list of steps at given times; each step is ``admit`` (an event happened: is it
written in full, after which summary?), ``due`` (the worker is idle: is a summary due?) or
``flush`` (the worker leaves); the table says what each step answers.
"""

from __future__ import annotations

import pytest

from goraxfast.core.ratelimit import Admission, LogBudget, Suppressed

FULL = Admission(True)
QUIET = Admission(False)


def full_after(count: int, window_s: float) -> Admission:
    return Admission(True, Suppressed(count, window_s))


Step = tuple[str, float, object]

#: name, burst, refill_s, [(step, now, expected answer)]
SCENARIOS: list[tuple[str, int, float, list[Step]]] = [
    (
        "the first burst events are written in full",
        3,
        60.0,
        [("admit", 0.0, FULL), ("admit", 0.1, FULL), ("admit", 0.2, FULL)],
    ),
    (
        "past the burst events are suppressed",
        2,
        60.0,
        [("admit", 0.0, FULL), ("admit", 0.0, FULL), ("admit", 1.0, QUIET), ("admit", 2, QUIET)],
    ),
    (
        "a token comes back after refill_s and the next full one brings the summary",
        1,
        10.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 1.0, QUIET),
            ("admit", 4.0, QUIET),
            ("admit", 9.0, QUIET),
            ("admit", 10.0, full_after(3, 9.0)),
        ],
    ),
    (
        "tokens refill continuously, not in whole periods",
        2,
        10.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 0.0, FULL),
            ("admit", 5.0, QUIET),
            ("admit", 15.0, full_after(1, 10.0)),  # 1.5 tokens back: one used
            ("admit", 19.0, QUIET),  # 0.5 + 0.4 = 0.9
            ("admit", 20.0, full_after(1, 1.0)),  # 1.0
        ],
    ),
    (
        "the bucket holds at most burst tokens however long it was quiet",
        2,
        1.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 1000.0, FULL),
            ("admit", 1000.0, FULL),
            ("admit", 1000.0, QUIET),
        ],
    ),
    (
        "an idle worker reports the suppressed ones once a token is back",
        1,
        10.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 2.0, QUIET),
            ("admit", 3.0, QUIET),
            ("due", 9.9, None),
            ("due", 10.0, Suppressed(2, 8.0)),
            ("due", 11.0, None),  # reported once
            ("admit", 11.0, FULL),  # the summary did not spend the token
        ],
    ),
    (
        "nothing is due when nothing was suppressed",
        1,
        10.0,
        [("admit", 0.0, FULL), ("due", 100.0, None), ("flush", 100.0, None)],
    ),
    (
        "a leaving worker reports whatever is still unreported",
        1,
        10.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 1.0, QUIET),
            ("flush", 4.0, Suppressed(1, 3.0)),
            ("flush", 5.0, None),
        ],
    ),
    (
        "the window of a summary starts at the first suppressed event after the last summary",
        1,
        10.0,
        [
            ("admit", 0.0, FULL),
            ("admit", 1.0, QUIET),
            ("admit", 10.0, full_after(1, 9.0)),
            ("admit", 12.0, QUIET),
            ("admit", 13.0, QUIET),
            ("admit", 20.0, full_after(2, 8.0)),
        ],
    ),
    (
        "a clock that steps back neither refills nor breaks the bucket",
        1,
        10.0,
        [("admit", 100.0, FULL), ("admit", 50.0, QUIET), ("admit", 105.0, QUIET)],
    ),
]


@pytest.mark.parametrize(
    ("burst", "refill_s", "steps"),
    [(b, r, s) for _, b, r, s in SCENARIOS],
    ids=[name for name, *_ in SCENARIOS],
)
def test_log_budget(burst: int, refill_s: float, steps: list[Step]) -> None:
    budget = LogBudget(burst, refill_s)
    answers = [getattr(budget, step)(now) for step, now, _ in steps]
    assert answers == [expected for _, _, expected in steps]


def test_suppressed_counts_what_is_unreported() -> None:
    budget = LogBudget(1, 10.0)
    budget.admit(0.0)
    budget.admit(1.0)
    budget.admit(2.0)
    assert budget.suppressed == 2
    budget.flush(3.0)
    assert budget.suppressed == 0


@pytest.mark.parametrize(("burst", "refill_s"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("nan"))])
def test_a_budget_that_could_never_write_anything_is_refused(burst: int, refill_s: float) -> None:
    with pytest.raises(ValueError):
        LogBudget(burst, refill_s)
