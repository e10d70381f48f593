"""Loading and binding a handler: every way it can be wrong is one HandlerError line, at start."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goraxfast.errors import HandlerError
from goraxfast.worker.handler import bind_handler, load_handler


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway handler modules (forgotten again afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _error(path: str) -> str:
    with pytest.raises(HandlerError) as info:
        load_handler(path)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "path", ["jobs", "jobs:", ":handle", "jobs.:handle", "my-app:handle", "jobs:handle()", ""]
)
def test_a_path_of_the_wrong_shape_is_refused(path: str) -> None:
    assert "must look like 'package.module:function'" in _error(path)


def test_a_module_that_is_not_there_says_so(app_dir: Path) -> None:
    assert _error("no_such_module:handle") == (
        "cannot import handler module 'no_such_module': there is no module 'no_such_module' "
        "(looked in the current directory and the installed packages)"
    )


def test_a_missing_package_of_a_dotted_module_says_which(app_dir: Path) -> None:
    assert "there is no module 'nopkg'" in _error("nopkg.jobs:handle")


def test_a_module_missing_one_of_its_own_imports_names_the_import_and_where(
    app_dir: Path,
) -> None:
    (app_dir / "needs_dep.py").write_text("import\tnot_installed_dep\n")

    text = _error("needs_dep:handle")

    assert "importing it raised ModuleNotFoundError: No module named 'not_installed_dep'" in text
    assert f"({app_dir / 'needs_dep.py'}:1)" in text


def test_a_module_that_raises_on_import_names_the_exception_and_where(app_dir: Path) -> None:
    (app_dir / "raises.py").write_text("x = 1\nraise RuntimeError('no database\\nat all')\n")

    text = _error("raises:handle")

    assert "importing it raised RuntimeError: no database at all" in text
    assert f"({app_dir / 'raises.py'}:2)" in text


def test_a_module_with_a_syntax_error_names_the_line(app_dir: Path) -> None:
    (app_dir / "broken.py").write_text("def handle(msg):\n    return (\n")

    text = _error("broken:handle")

    assert "importing it raised SyntaxError:" in text
    assert f"({app_dir / 'broken.py'}:2)" in text


def test_a_module_that_exits_on_import_is_a_handler_error(app_dir: Path) -> None:
    (app_dir / "exits.py").write_text("import sys\nsys.exit(3)\n")

    assert "importing it raised SystemExit: 3" in _error("exits:handle")


def test_a_missing_attribute_names_it(app_dir: Path) -> None:
    (app_dir / "jobs.py").write_text("def other(msg):\n    pass\n")

    assert _error("jobs:handle") == "handler 'jobs:handle': 'jobs' has no 'handle'"


def test_something_not_callable_is_refused(app_dir: Path) -> None:
    (app_dir / "jobs.py").write_text("handle = 42\n")

    assert _error("jobs:handle") == "handler 'jobs:handle' is not callable"


def test_dotted_attributes_are_followed(app_dir: Path) -> None:
    (app_dir / "jobs.py").write_text(
        "class Jobs:\n    @staticmethod\n    def run(msg):\n        pass\n"
    )

    assert load_handler("jobs:Jobs.run").__qualname__ == "Jobs.run"


def no_args() -> None: ...


def three_required(a: Any, b: Any, c: Any) -> None: ...


def keyword_required(msg: Any, *, tenant: str) -> None: ...


@pytest.mark.parametrize(
    "func", [no_args, three_required, keyword_required], ids=lambda f: f.__name__
)
def test_a_callable_that_cannot_take_a_message_is_refused_when_bound(func: Any) -> None:
    with pytest.raises(HandlerError, match=r"cannot be called as \(message\) or \(message, info\)"):
        bind_handler(func)


def one(msg: Any) -> None: ...


def two(msg: Any, info: Any) -> None: ...


def optional_info(msg: Any, info: Any = None) -> None: ...


def star(*args: Any) -> None: ...


def extra_defaults(msg: Any, info: Any, retries: int = 3, *, verbose: bool = False) -> None: ...


@pytest.mark.parametrize(
    ("func", "wants_info"),
    [(one, False), (two, True), (optional_info, True), (star, True), (extra_defaults, True)],
    ids=lambda f: getattr(f, "__name__", str(f)),
)
def test_a_callable_taking_a_message_is_bound_with_its_calling_convention(
    func: Any, wants_info: bool
) -> None:
    assert bind_handler(func).wants_info is wants_info


def test_a_builtin_without_a_signature_is_taken_on_trust() -> None:
    assert bind_handler(print).func is print
