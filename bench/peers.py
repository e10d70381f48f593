"""A separate virtual environment for Celery and dramatiq, created by the bench itself.

Their pins (kombu, billiard, pycurl, their own botocore) must not disturb goraxfast's, so they
live in ``bench/.venv-peers`` (git-ignored), built with the same interpreter as ours. Versions
are pinned to the ones this bench was measured with; boto3 is pinned to ours so that pip's
resolver does not wander (it was seen searching for minutes when left free).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-peers"
PINS = (
    "celery[sqs]==5.7.0",
    "kombu==5.7.0",
    "dramatiq==2.2.1",
    "dramatiq-sqs==0.4.4",
    "boto3==1.43.117",
)


class PeersUnavailable(RuntimeError):
    """The peers' venv could not be built: Celery and dramatiq are reported as failed."""


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> str:
    """The peers' interpreter, installing it first if the pins changed (~10-40 s once)."""
    stamp = VENV / ".bench-pins"
    wanted = "\n".join(PINS)
    if python().exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python())
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python()), "-m", "pip", "install", "--quiet", *PINS],
    )
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise PeersUnavailable(
                f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
    stamp.write_text(wanted)
    return str(python())


def versions(peers_python: str) -> dict[str, str]:
    """The versions actually installed, for the report."""
    code = (
        "import importlib.metadata as m\n"
        "for n in ('celery','kombu','dramatiq','dramatiq-sqs','boto3','botocore'):\n"
        "    print(n, m.version(n))\n"
    )
    done = subprocess.run([peers_python, "-c", code], capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
