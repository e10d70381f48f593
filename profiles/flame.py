"""Collapsed stacks (py-spy's ``raw`` format) to top costs, speedscope JSON and an SVG flame graph.

py-spy writes one line per distinct stack: ``outer (file.py:1);inner (file.py:9) 42``, the
count being samples. Everything here is a pure function of those lines, so it is tested on
synthetic stacks and needs no profiler. Two rankings answer two questions:

- *self* time: the frame at the top of the stack, grouped by function: "where is the CPU
  actually burnt" (a parser, a hash, a syscall wrapper);
- *inclusive* time: every function that appears anywhere in the stack: "what is this work
  for" (receive, ack, the handler). Recursion is counted once per sample.
"""

from __future__ import annotations

import html
import json
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def parse_collapsed(text: str) -> dict[tuple[str, ...], int]:
    """Stacks (outermost first) to sample counts; malformed lines are skipped."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks[tuple(stack.split(";"))] += int(count)
    return dict(stacks)


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0] if ":" in where else where
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


@dataclass(frozen=True, slots=True)
class Cost:
    frame: str
    samples: int
    share: float  # of all samples of the process


def top_self(stacks: dict[tuple[str, ...], int], n: int = 5) -> list[Cost]:
    total = sum(stacks.values())
    counts: Counter[str] = Counter()
    for stack, count in stacks.items():
        counts[short(stack[-1])] += count
    return [Cost(f, c, c / total) for f, c in counts.most_common(n)] if total else []


def top_inclusive(
    stacks: dict[tuple[str, ...], int],
    n: int = 5,
    skip: Iterable[str] = (),
    max_share: float = 0.9,
) -> list[Cost]:
    """Functions by the share of samples they appear in.

    Entry points (``<module>``, ``Engine.run``, the event loop's ``run``, the worker's main
    loop) are on nearly every stack and say nothing about where the work goes, so frames above
    ``max_share`` and frames matching ``skip`` are left out.
    """
    total = sum(stacks.values())
    skipped = set(skip)
    counts: Counter[str] = Counter()
    for stack, count in stacks.items():
        for frame in {short(f) for f in stack}:
            if not any(s in frame for s in skipped):
                counts[frame] += count
    ranked = [(f, c) for f, c in counts.most_common() if c / max(total, 1) <= max_share]
    return [Cost(f, c, c / total) for f, c in ranked[:n]] if total else []


def package(frame: str) -> str:
    """The package a (shortened) frame's code belongs to: ``botocore``, ``goraxfast``, ..."""
    where = frame.rsplit(" (", 1)[-1].rstrip(")")
    top = where.split("/", 1)[0]
    if top.endswith(".py") or top.startswith("<"):
        return "stdlib/" + top.removesuffix(".py") if top.endswith(".py") else top
    return top


def top_packages(stacks: dict[tuple[str, ...], int], n: int = 5) -> list[Cost]:
    """Self time summed per package: which library the process's CPU is spent in."""
    total = sum(stacks.values())
    counts: Counter[str] = Counter()
    for stack, count in stacks.items():
        counts[package(short(stack[-1]))] += count
    return [Cost(f, c, c / total) for f, c in counts.most_common(n)] if total else []


def speedscope(stacks: dict[tuple[str, ...], int], name: str) -> dict[str, Any]:
    """A speedscope "sampled" profile (open the file at https://www.speedscope.app)."""
    frames: list[dict[str, str]] = []
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in stacks.items():
        ids = []
        for frame in stack:
            key = short(frame)
            if key not in index:
                index[key] = len(frames)
                frames.append({"name": key})
            ids.append(index[key])
        samples.append(ids)
        weights.append(count)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "exporter": "goraxfast profiles/flame.py",
    }


@dataclass
class Node:
    name: str
    value: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def tree(stacks: dict[tuple[str, ...], int]) -> Node:
    root = Node("all")
    for stack, count in stacks.items():
        root.value += count
        node = root
        for frame in stack:
            key = short(frame)
            node = node.children.setdefault(key, Node(key))
            node.value += count
    return root


def _color(name: str) -> str:
    """Stable warm colours per package, so the same code has the same colour in every graph."""
    package = name.split("(")[-1].split("/")[0]
    h = zlib.crc32(package.encode())
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 120},{40 + (h >> 16) % 50})"


def _depth(node: Node, total: int, width: int) -> int:
    visible = [c for c in node.children.values() if c.value / total * width >= 0.5]
    return 1 + max((_depth(c, total, width) for c in visible), default=0)


def svg(stacks: dict[tuple[str, ...], int], title: str, width: int = 1400, row: int = 17) -> str:
    """A static flame graph (outermost frame at the bottom); hover a box for its figures."""
    root = tree(stacks)
    total = max(root.value, 1)
    height = (_depth(root, total, width) + 2) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="monospace" font-size="11">',
        '<rect width="100%" height="100%" fill="#fdfdf6"/>',
        f'<text x="6" y="13" font-size="13">{html.escape(title)} ({total} samples)</text>',
    ]

    def walk(node: Node, x: float, depth: int) -> None:
        w = node.value / total * width
        if w < 0.5:
            return
        y = height - (depth + 1) * row
        tip = f"{html.escape(node.name)}: {node.value} samples, {node.value / total:.1%}"
        chars = int(w / 6.8)
        text = ""
        if chars >= 4:
            shown = node.name if len(node.name) <= chars else node.name[: chars - 2] + ".."
            text = f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(shown)}</text>'
        out.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" '
            f'fill="{_color(node.name)}" stroke="#fdfdf6"/>{text}</g>'
        )
        cx = x
        for child in sorted(node.children.values(), key=lambda c: -c.value):
            walk(child, cx, depth + 1)
            cx += child.value / total * width

    walk(root, 0.0, 0)
    out.append("</svg>")
    return "\n".join(out)


def dump_speedscope(stacks: dict[tuple[str, ...], int], name: str) -> str:
    return json.dumps(speedscope(stacks, name))
