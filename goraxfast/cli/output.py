"""How the CLI writes: results on stdout, everything else on stderr, one line each."""

from __future__ import annotations

import sys


def one_line(text: str) -> str:
    return " ".join(text.split())


def err(*parts: object) -> None:
    print(*parts, file=sys.stderr)
