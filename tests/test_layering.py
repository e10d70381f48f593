"""The package's folders are its layers: a module imports only from lower layers (or its own
folder), and no two modules import each other, however indirectly.

Checked by parsing every module, so an import inside a function or under ``TYPE_CHECKING`` counts
as much as one at the top: a circle hidden in a function is still a circle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "goraxfast"

#: Lowest first. A module may import a module of a lower layer, or of its own folder.
LAYERS: dict[str, int] = {
    "goraxfast.errors": 0,
    "goraxfast.version": 0,  # the installed version, asked by every layer
    "goraxfast.core": 1,
    "goraxfast.config": 2,
    "goraxfast.ops.tracing": 2,  # below the SQS clients, which trace their calls with it
    "goraxfast.sqs": 3,
    "goraxfast.ipc": 3,
    "goraxfast.ops": 3,
    "goraxfast.worker": 4,
    "goraxfast.publish": 4,
    "goraxfast.engine": 5,
    "goraxfast.testing": 6,
    "goraxfast.cli": 7,
    "goraxfast.__main__": 8,
    "goraxfast": 8,  # the facade: re-exports the public API, imported by nothing inside
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The goraxfast modules ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, origin] if origin else base)
            # ``from pkg import mod`` imports the module pkg.mod when there is one
            targets = [
                f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin
                for a in node.names
            ]
        found.update(t for t in targets if t == "goraxfast" or t.startswith("goraxfast."))
    return {t for t in found if t != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) & known for name, path in mods.items()}


def layer_of(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def cycles(g: dict[str, set[str]]) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    yield sorted(component)


def test_every_module_belongs_to_a_layer() -> None:
    for name in modules():
        assert any(name == k or name.startswith(k + ".") for k in LAYERS), name


def test_no_module_imports_from_a_higher_layer() -> None:
    wrong = []
    for name, targets in graph().items():
        home, rank = layer_of(name)
        for target in sorted(targets):
            there, target_rank = layer_of(target)
            if there != home and target_rank >= rank:
                wrong.append(f"{name} (layer {home}) imports {target} (layer {there})")
    assert wrong == []


def test_no_import_circles() -> None:
    assert list(cycles(graph())) == []


def test_the_lifecycle_does_not_reach_into_the_worker_side() -> None:
    """The zygote's events and the worker loop are the workforce's business: the lifecycle talks
    to the workforce only (it binds the user's handler, which is the worker side's public face)."""
    reached = graph()["goraxfast.engine.engine"] & {
        "goraxfast.worker.zygote",
        "goraxfast.worker.loop",
    }
    assert reached == set()


def test_no_module_imports_a_private_name_of_another() -> None:
    mods = modules()
    wrong = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("goraxfast"):
                wrong.extend(
                    f"{name} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and node.module != name
                )
    assert wrong == []


@pytest.mark.parametrize(
    ("g", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}, [["c", "d"]]),
    ],
    ids=["a chain", "two modules", "three through a fourth", "one circle of two"],
)
def test_the_circle_finder_finds_circles(g: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(cycles(g)) == expected


def test_the_layer_check_sees_a_function_level_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from goraxfast.cli.main import main\n")
    assert imports_of("goraxfast.core.m", source, {"goraxfast.cli.main"}) == {"goraxfast.cli.main"}
