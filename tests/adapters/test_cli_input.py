"""The command line meets bad input, odd files and other users: one line, clean stdout, private files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.helpers import roundtable

pytestmark = pytest.mark.server  # every test runs the CLI as a process


@pytest.fixture
def env(tmp_path: Path, fake_llm: FakeLLM) -> dict[str, str]:
    """The CLI's environment: a data dir in tmp, the in-memory bus, LiteLLM to the fake LLM."""
    return {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(tmp_path / "data"),
        "ROUNDTABLE_BUS_URL": "memory://",
        "ROUNDTABLE_MODEL": "openai/fake",
        "ROUNDTABLE_API_BASE": fake_llm.base_url,
        "ROUNDTABLE_API_KEY": "sk-fake",
    }


def test_debug_logs_never_reach_stdout(env: dict[str, str]) -> None:
    """LiteLLM's own handler writes records below WARNING to stdout; under --json they must not."""
    proc = roundtable(
        "ask",
        "Should we ship on Friday?",
        "--rounds",
        "1",
        "--team",
        "analyst,skeptic",
        "--json",
        env={**env, "ROUNDTABLE_LOG_LEVEL": "DEBUG"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines[:5]
    assert json.loads(lines[0])["status"] == "completed"
