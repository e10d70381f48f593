"""goraxfast.core stays sans-IO: no module under it imports anything that waits, reads a clock,
draws randomness, touches the OS or talks to AWS. Checked by parsing, so an import inside a
function (or one only reached at run time) is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "goraxfast" / "core"

FORBIDDEN = frozenset(
    {
        # named by the design: I/O, clocks, randomness, concurrency, AWS clients
        "asyncio",
        "os",
        "time",
        "random",
        "socket",
        "threading",
        "multiprocessing",
        "mmap",
        "select",
        "signal",
        "subprocess",
        "boto3",
        "botocore",
        "aiobotocore",
        "uvloop",
        # the same things by other doors
        "_thread",
        "concurrent",
        "ctypes",
        "importlib",
        "queue",
        "selectors",
        "ssl",
        "urllib",
        "http",
    }
)

#: Names core may import from a forbidden module, each for a reason. ``threading.stack_size``
#: reads the stack new threads get (no thread is made): the decoder needs it to refuse letting
#: msgspec recurse where the C stack cannot hold it (core/jsonbounds.py).
ALLOWED_NAMES = frozenset({"threading.stack_size"})

#: What core may use of goraxfast: itself, and the error types (pure).
ALLOWED_GORAXFAST = frozenset({"goraxfast.core", "goraxfast.errors"})


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Absolute names of everything ``source`` imports (relative imports resolved)."""
    names: list[str] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, origin] if origin else base)
            names.extend(f"{origin}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.append("importlib")  # a dynamic import escapes this check: treat as one
    return names


def is_allowed_goraxfast(name: str) -> bool:
    return any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_GORAXFAST)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    return [
        name
        for name in imported_modules(source, module, is_package)
        if (name.split(".")[0] in FORBIDDEN and name not in ALLOWED_NAMES)
        or (name.split(".")[0] == "goraxfast" and not is_allowed_goraxfast(name))
    ]


def test_core_package_has_the_expected_modules() -> None:
    names = {module_name(path) for path in core_modules()}
    assert {
        "goraxfast.core",
        "goraxfast.core.ring",
        "goraxfast.core.acks",
        "goraxfast.core.limiter",
        "goraxfast.core.leases",
    } <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from time import monotonic",
        "import asyncio as aio",
        "def f():\n    import random\n",
        "from concurrent.futures import Future",
        "from threading import Thread",
        "from goraxfast import shm",
        "from goraxfast.ipc.rings import Doorbell",
        "from goraxfast import core, shm",
        "from goraxfast.corex import thing",
        "from .. import shm",
        "from ..sqs import Client",
        "mod = __import__('socket')",
    ],
)
def test_checker_catches_impure_imports(source: str) -> None:
    assert violations(source, "goraxfast.core.example") != []


@pytest.mark.parametrize(
    "source",
    [
        "import heapq, struct, math",
        "from collections import deque",
        "import msgspec",
        "from goraxfast.errors import ValidationError",
        "from goraxfast import errors",
        "from .. import errors",
        "from goraxfast.core.ring import RingProducer",
        "from .ring import RingProducer",
        "from . import ring",
        "import json, uuid\nfrom datetime import datetime",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations(source, "goraxfast.core.example") == []
