"""The docs link only into the repository: a fresh clone is all a user has.

Every relative link of every tracked Markdown file must name a file or folder of the repository
(never one beside it through ``..``), and a ``#anchor`` must name a heading of its target as
GitHub renders it. Absolute ``http(s)`` links are allowed and not fetched (the suite runs
offline). No tracked text file may send a reader to the design documents that lived outside the
repository while it was being written.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Folders that are installs, caches or outputs, never docs (used when git is not there).
NOT_DOCS = {
    ".git",
    ".venv",
    ".localstack",
    ".venv-peers",
    ".fauxqs",
    "node_modules",
    "results",
    "out",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".benchmarks",
    "__pycache__",
}

# Built from pieces so that this file does not match itself.
_SPEC, _DESIGN, _SHARED = "SPEC" + ".md", "DESIGN" + ".md", "shared" + "/"
#: What sent readers outside the repository: the spec and design files by name, the folder
#: beside the repository they lived in, and the spec's section numbers.
OUTSIDE_MENTIONS = re.compile(
    rf"\b{re.escape(_SPEC)}|\b{re.escape(_DESIGN)}|\.\./{re.escape(_SHARED)}|\b{_SHARED}[A-Z]+\.md"
    r"|\bSPEC §"
)

#: Files that still carry such a mention, each only until its owner applies the one-line fix
#: given in issue 15's report (they were being edited by others when this test was written).
#: The test fails when a file not listed here gains one, and when a listed file no longer has
#: one: take it off the list then.
NOT_YET_FIXED: frozenset[str] = frozenset()


def tracked_files() -> list[Path]:
    """The repository's files as git knows them; a plain walk when this is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return sorted(
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not NOT_DOCS.intersection(p.relative_to(ROOT).parts)
        )
    names = [n for n in out.decode().split("\0") if n]
    return [ROOT / n for n in names if not NOT_DOCS.intersection(Path(n).parts)]


def markdown_files() -> list[Path]:
    return [p for p in tracked_files() if p.suffix == ".md" and p.is_file()]


# --- reading Markdown ----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks: links and headings live only there."""
    lines: list[tuple[int, str]] = []
    fence = ""
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        lines.append((number, line))
    return lines


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}: ({self.target})"


def links(path: Path) -> list[Link]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        ref = _REF_DEF.match(line)
        if ref:
            found.append(Link(path, number, ref.group(1)))
            continue
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            found.append(Link(path, number, match.group(1)))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, punctuation dropped (all but
    ``-`` and ``_``), each space a ``-``. Links in it count by their text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = [
        c
        for c in text
        if c in "-_ " or unicodedata.category(c)[0] in "LM" or unicodedata.category(c) == "Nd"
    ]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file has: its headings' slugs (repeats numbered ``-1``, ``-2``, as
    GitHub numbers them) and explicit ``<a id=...>`` / ``<a name=...>``."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    previous = ""
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = None
        atx = _ATX.match(line)
        if atx:
            heading = atx.group(2)
        elif (
            _SETEXT.match(line)
            and previous.strip()
            and not previous.lstrip().startswith(("|", "-", "*", ">"))
        ):
            heading = previous
        if heading is not None:
            slug = github_slug(heading)
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
        found.update(a.lower() for a in _HTML_ANCHOR.findall(line))
        previous = line
    return found


def problem(link: Link) -> str | None:
    """What is wrong with one link, or None."""
    target = link.target
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
        scheme = target.split(":", 1)[0].lower()
        return None if scheme in {"http", "https", "mailto"} else "a scheme a reader cannot follow"
    if not target:
        return "an empty link"
    path_part, _, fragment = target.partition("#")
    if path_part.startswith("/"):
        return "an absolute path: it means the site's root on GitHub, not the repository's"
    dest = (link.source.parent / unquote(path_part)).resolve() if path_part else link.source
    if not dest.is_relative_to(ROOT):
        return "points outside the repository"
    if not dest.exists():
        return f"no such file or folder: {dest.relative_to(ROOT)}"
    if not fragment:
        return None
    if dest.suffix == ".md":
        if unquote(fragment).lower() not in anchors(dest):
            return f"no heading #{fragment} in {dest.relative_to(ROOT)}"
        return None
    if dest.is_file() and re.fullmatch(r"L\d+(-L\d+)?", fragment):
        return None  # GitHub's line anchors in a source file
    return f"an anchor #{fragment} on a file that has none"


# --- the checks ----------------------------------------------------------------------------------


DOCS = markdown_files()


def test_the_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "profiles/README.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    broken = [f"{link}: {why}" for link in links(doc) if (why := problem(link)) is not None]
    assert broken == []


def test_no_tracked_file_sends_readers_to_documents_outside_the_repository() -> None:
    offending: dict[str, list[str]] = {}
    for path in tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # not a text file
        hits = [
            f"{number}: {line.strip()[:90]}"
            for number, line in enumerate(text.splitlines(), start=1)
            if OUTSIDE_MENTIONS.search(line)
        ]
        if hits:
            offending[path.relative_to(ROOT).as_posix()] = hits
    new = {name: hits for name, hits in offending.items() if name not in NOT_YET_FIXED}
    assert new == {}
    assert sorted(NOT_YET_FIXED - offending.keys()) == [], "fixed: take these off NOT_YET_FIXED"


# --- the reading rules themselves ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Quick start", "quick-start"),
        ("Consuming: the engine", "consuming-the-engine"),
        ("Through a real round trip: `--rtt-ms`", "through-a-real-round-trip---rtt-ms"),
        ("Compatibility with gorax's wire format", "compatibility-with-goraxs-wire-format"),
        ("FIFO queues and fair queues", "fifo-queues-and-fair-queues"),
        (
            "CPU-bound handler (`cpu:5`, 5 ms of CPU per message) on fauxqs, 800 messages",
            "cpu-bound-handler-cpu5-5-ms-of-cpu-per-message-on-fauxqs-800-messages",
        ),
        ("fauxqs 1.9.2 (Node), 10,000 messages per run", "fauxqs-192-node-10000-messages-per-run"),
        ("`QUEUE_PROCESS_TIMEOUT` and × signs", "queue_process_timeout-and--signs"),
        ("See [the table](#x) here", "see-the-table-here"),
        ("Moving from gorax", "moving-from-gorax"),
    ],
)
def test_heading_slugs_follow_githubs_rules(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_are_numbered_and_code_blocks_are_not_read(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n## Notes\n\ntext\n\n## Notes\n\n```sh\n# not a heading\n[x](nowhere.md)\n```\n"
        "Setext heading\n--------------\n\nsee `[y](also-nowhere.md)` and [z](#notes-1)\n"
    )
    assert anchors(doc) == {"title", "notes", "notes-1", "setext-heading"}
    assert [link.target for link in links(doc)] == ["#notes-1"]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("README.md", None),
        ("README.md#quick-start", None),
        ("profiles/README.md", None),
        ("goraxfast/core/exit_codes.py", None),
        ("goraxfast/core/exit_codes.py#L10", None),
        ("goraxfast/", None),
        ("https://example.com/x", None),
        ("../shared/x.md", "points outside the repository"),
        ("README.md#no-such-heading", "no heading #no-such-heading in README.md"),
        ("nowhere.md", "no such file or folder: nowhere.md"),
        (
            "/README.md",
            "an absolute path: it means the site's root on GitHub, not the repository's",
        ),
        ("file:///etc/passwd", "a scheme a reader cannot follow"),
    ],
)
def test_what_counts_as_a_broken_link(target: str, why: str | None) -> None:
    assert problem(Link(ROOT / "README.md", 1, target)) == why
