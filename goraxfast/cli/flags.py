"""Flags whose values are checked with the environment's rules, so that every mistake is
reported at once, one line each, with the others (argparse would stop at the first)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goraxfast.config import QUEUE_NAME, QUEUE_NAME_RULE
from goraxfast.errors import ConfigProblem
from goraxfast.worker.handler import DOTTED_NAME


@dataclass(frozen=True, slots=True)
class BadFlag:
    """What a :func:`flag` converter returns instead of raising: argparse would stop at the
    first bad flag, and print its usage; this way every mistake is listed, one line each."""

    problem: ConfigProblem


def flag(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with ``parse`` (a config parser raising ValueError
    with the allowed range) and turns a refusal into a :class:`BadFlag`."""

    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            return BadFlag(ConfigProblem(name, raw, str(exc)))

    return convert


def queue_name(raw: str) -> str:
    if not QUEUE_NAME.fullmatch(raw):
        raise ValueError(f"a queue name: {QUEUE_NAME_RULE}")
    return raw


def readable_file(raw: str) -> Path:
    path = Path(raw)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"a readable JSON-lines file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ValueError("a readable JSON-lines file (this is a directory)")
    return path


def handler_path(raw: str) -> str:
    module, sep, attr = raw.partition(":")
    if not sep or not DOTTED_NAME.fullmatch(module) or not DOTTED_NAME.fullmatch(attr):
        raise ValueError("MODULE:FUNCTION, like myapp.jobs:handle")
    return raw


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError("one of: " + ", ".join(options))
        return raw.lower()

    return parse


def flag_problems(args: argparse.Namespace) -> list[ConfigProblem]:
    """Every flag that :func:`flag` refused, in the order the flags are declared."""
    return [value.problem for value in vars(args).values() if isinstance(value, BadFlag)]
