"""The session document of `ask --json`, `show`, `resume` and `retally` (docs/cli.md), byte for byte.

One fixed session runs through the real command line against the deterministic fake LLM; the session id
and the durations are the only values replaced, by placeholders. The golden files in
tests/adapters/golden/cli are indented for review, and compared in the exact form the CLI prints
(`json.dumps(doc, ensure_ascii=False)`), so key order, spacing and number formatting are all held.
After an intended change of the document, rewrite them with
`ROUNDTABLE_UPDATE_GOLDEN=1 pytest tests/adapters/test_cli_golden.py` and review the diff.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.helpers import roundtable
from tests.storage.untyped import store_the_old_way, untyped_report

GOLDEN = Path(__file__).resolve().parent / "golden" / "cli"
UPDATE = os.environ.get("ROUNDTABLE_UPDATE_GOLDEN") == "1"

TOPIC = "Should our team move to a four-day work week?"
#: Two full rounds and a ranked vote of three, whose consensus (1 of 3) is not a short decimal.
ASK = ("--rounds", "2", "--voting", "ranked", "--team", "compact", "--seed", "7", "--no-early-stop")

_DURATION = re.compile(r'"duration_s": -?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


def normalise(stdout: str, session_id: str) -> str:
    """The printed document with its session id and duration replaced, and nothing else touched."""
    return _DURATION.sub('"duration_s": "<duration>"', stdout.replace(session_id, "<session>"))


def check(name: str, stdout: str) -> None:
    """`stdout` is, byte for byte, the CLI's rendering of the golden document `name`."""
    path = GOLDEN / f"{name}.json"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pretty = json.dumps(json.loads(stdout), ensure_ascii=False, indent=2) + "\n"
        path.write_text(pretty, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{path} did not exist and was written; review and commit it")
    printed = json.dumps(json.loads(path.read_text(encoding="utf-8")), ensure_ascii=False) + "\n"
    assert stdout == printed, (
        f"{name}: the document differs from {path}; if the change is intended, rerun with "
        "ROUNDTABLE_UPDATE_GOLDEN=1 and review the diff"
    )


def test_the_session_document_of_a_fixed_session_matches_the_golden_files(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    env = {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(tmp_path / "data"),
        "ROUNDTABLE_BUS_URL": "memory://",
        "ROUNDTABLE_MODEL": "openai/fake",
        "ROUNDTABLE_API_BASE": fake_llm.base_url,
        "ROUNDTABLE_API_KEY": "sk-fake",
    }
    asked = roundtable("ask", TOPIC, *ASK, "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    session_id = json.loads(asked.stdout)["session_id"]
    check("ask", normalise(asked.stdout, session_id))

    # A stored session reads back as the very bytes `ask` printed, whichever command reads it.
    for command in ("show", "resume"):
        again = roundtable(command, session_id, "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout == asked.stdout, command

    recounted = roundtable("retally", session_id, "--voting", "condorcet", "--json", env=env)
    assert recounted.returncode == 0, recounted.stderr
    check("retally", normalise(recounted.stdout, session_id))


@pytest.mark.server  # runs the CLI in subprocesses
def test_a_session_stored_before_the_typed_report_shows_as_stored_and_recounts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    session_id = asyncio.run(store_the_old_way(f"sqlite+aiosqlite:///{data / 'roundtable.db'}"))
    env = {**os.environ, "ROUNDTABLE_DATA_DIR": str(data)}

    shown = roundtable("show", session_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == json.dumps(untyped_report(), ensure_ascii=False) + "\n"

    recounted = roundtable("retally", session_id, "--voting", "unanimity", "--json", env=env)
    assert recounted.returncode == 0, recounted.stderr
    document = json.loads(recounted.stdout)
    assert (document["voting_rule"], document["tally"]["rule"]) == ("unanimity", "unanimity")
    assert document["ballots"] == untyped_report()["ballots"]
