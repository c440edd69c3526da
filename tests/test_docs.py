"""The reference docs describe the code as it is: their examples run, and every command and flag is there."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

from adapters.cli.app import app
from engine.voting import parse_document, tally

DOCS = Path(__file__).resolve().parents[1] / "docs"
_JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every command under a group, named as typed (`roundtable bus dlq list`), with its command object."""
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, typer.core.TyperGroup):
            found += _commands(command, path)
    return found


def test_the_tally_examples_give_the_documented_output() -> None:
    """docs/tally.md alternates an input document and its output; each input counts to its output."""
    blocks = [json.loads(block) for block in _JSON_BLOCK.findall((DOCS / "tally.md").read_text())]
    assert len(blocks) == 4
    for document, output in zip(blocks[::2], blocks[1::2], strict=True):
        result = tally(parse_document(document)).model_dump(mode="json")
        assert result == output
        assert list(result) == list(output)


def test_every_command_and_flag_is_in_the_cli_doc() -> None:
    text = (DOCS / "cli.md").read_text()
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    missing = []
    for path, command in _commands(root, "roundtable"):
        if f"`{path}" not in text:
            missing.append(path)
        for param in command.params:
            missing += [f"{path} {flag}" for flag in param.opts if flag.startswith("--") and flag not in text]
    assert missing == []
