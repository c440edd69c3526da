"""The command line meets bad input, odd files and other users: one line, clean stdout, private files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.helpers import ROOT, roundtable

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


BALLOT_DOC = {"rule": "majority", "candidates": ["P1", "P2"], "ballots": [{"voter": "a", "choice": "P2"}]}
DEEP = "[" * 100_000 + "]" * 100_000


def test_tally_refuses_a_deeply_nested_document_in_one_line() -> None:
    proc = roundtable("tally", stdin=DEEP)
    assert proc.returncode == 2
    assert proc.stderr == "error: not JSON: the document is nested too deeply\n"


def test_tally_jsonl_gives_a_deeply_nested_line_an_error_record_and_goes_on() -> None:
    good = json.dumps(BALLOT_DOC)
    proc = roundtable("tally", "--jsonl", stdin="\n".join([good, DEEP, good]))
    assert proc.returncode == 0, proc.stderr[-500:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("winner") for r in results] == ["P2", None, "P2"]
    assert results[1] == {"error": "not JSON: the document is nested too deeply"}


def _tally_bytes(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """`roundtable tally` fed raw bytes (tests.helpers.roundtable takes text)."""
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli.app", "tally", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_tally_refuses_invalid_utf8() -> None:
    raw = json.dumps(BALLOT_DOC).replace('"a"', '"\\u0000"').encode().replace(b"\\u0000", b"\xff")
    proc = _tally_bytes(stdin=raw)
    assert proc.returncode == 2
    assert proc.stdout == b""
    where = raw.index(b"\xff")
    assert proc.stderr.decode() == f"error: not UTF-8: byte 0xff at offset {where} is not valid UTF-8 text\n"


def test_tally_jsonl_gives_an_invalid_utf8_line_an_error_record() -> None:
    good = json.dumps(BALLOT_DOC).encode()
    proc = _tally_bytes("--jsonl", stdin=b"\n".join([good, good.replace(b'"a"', b'"\xff"'), good]))
    assert proc.returncode == 0
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("winner") for r in results] == ["P2", None, "P2"]
    assert results[1]["error"].startswith("not UTF-8: byte 0xff")
