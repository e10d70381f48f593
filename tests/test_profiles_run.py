"""`make profile`'s summary says which round trip the profile was taken through."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.run import markdown


def _doc(**extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-12-03 08:00 UTC",
        "server": {"server": "fauxqs"},
        "handler": "noop",
        "workers": 2,
        "sqs_client": "fast",
        "duration_s": 3.0,
        "rate": 250,
        "handled": 60_000,
        "msgs_per_s": 20_000.0,
        "ran_dry": False,
        "processes": [],
        **extra,
    }


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        pytest.param({"rtt_ms": 15.0}, "+15 ms per SQS call (bench/delayproxy.py)", id="proxy"),
        pytest.param({"rtt_ms": 0.0}, "straight to the server", id="direct"),
        pytest.param({}, "straight to the server", id="summary-before-the-option"),
    ],
)
def test_the_summary_names_the_round_trip(extra: dict[str, Any], says: str) -> None:
    assert says in markdown(_doc(**extra))
