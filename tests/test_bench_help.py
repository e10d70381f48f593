"""``python -m bench --help`` shows examples a reader will paste: each one must be accepted."""

from __future__ import annotations

import shlex

import pytest

import bench.__main__ as bench_main
from bench.contenders import CONTENDERS
from bench.servers import ServerError, make_server

EXAMPLES = [
    line.strip().split("#", 1)[0].strip()
    for line in (bench_main.__doc__ or "").splitlines()
    if line.strip().startswith("python -m bench ")
]


def test_the_help_shows_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_parses_and_names_only_what_the_bench_knows(example: str) -> None:
    argv = shlex.split(example)[3:]  # after "python -m bench"
    args = bench_main.parse_args(argv)  # a refused flag or value exits 2 here
    unknown = [c for c in args.contenders.split(",") if c and c not in CONTENDERS]
    assert unknown == []
    if not args.endpoint:
        for name in args.servers.split(","):
            try:
                make_server(name)  # a dataclass: nothing starts
            except ServerError as exc:
                pytest.fail(str(exc))
