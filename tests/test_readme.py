"""The README is the contract: what it promises about settings and commands stays true."""

from __future__ import annotations

import re
from pathlib import Path

from goraxfast.cli.main import COMMANDS
from goraxfast.config import SETTINGS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_the_config_reads_is_documented_in_the_readme() -> None:
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert missing == []


def test_every_documented_variable_is_one_the_config_reads() -> None:
    table = re.findall(r"^\| `([A-Z_]+)`", README, flags=re.MULTILINE)
    known = {s.env for s in SETTINGS}
    assert [name for name in table if name not in known] == []


def test_every_cli_command_appears_in_the_readme() -> None:
    assert [name for name in COMMANDS if f"goraxfast {name}" not in README] == []


def test_the_readme_shows_the_two_setup_commands() -> None:
    assert "make run" in README and "make test" in README


def test_every_path_in_the_layout_tables_exists() -> None:
    """The layer table and "where each decision lives" name real modules and tests."""
    root = Path(__file__).parent.parent
    section = README.split("## Layout", 1)[1]
    named = set(
        re.findall(
            r"`((?:goraxfast|tests)/[\w/]+(?:\.py)?|(?:core|engine|sqs|ipc|ops|worker|cli|publish)/[\w.]+\.py)`",
            section,
        )
    )
    assert len(named) > 30
    missing = []
    for path in sorted(named):
        candidate = (
            root / path if path.startswith(("goraxfast", "tests")) else root / "goraxfast" / path
        )
        if not candidate.exists():
            missing.append(path)
    assert missing == []


def test_every_exit_code_of_the_process_tree_is_in_the_readme() -> None:
    from goraxfast.core.exit_codes import EXIT_CODES

    section = README.split("### Running under systemd or Kubernetes", 1)[1].split("\n## ", 1)[0]
    engine_rows = set(re.findall(r"^\| (\d+) \|", section, flags=re.M))
    assert {str(c.code) for c in EXIT_CODES if c.process == "engine"} <= engine_rows
    for entry in EXIT_CODES:
        assert re.search(rf"\b{entry.code}\b", section), entry
