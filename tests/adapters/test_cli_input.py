"""The command line meets bad input, odd files and other users: one line, clean stdout, private files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.datadir import PRIVATE_FILES
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


def test_a_data_dir_that_is_a_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    proc = roundtable("sessions", env={**env, "ROUNDTABLE_DATA_DIR": str(tmp_path / "file")})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the data folder ")
    assert proc.stderr.count("\n") == 1


def test_a_data_dir_that_cannot_be_created_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, so nothing can be created below it")
    proc = roundtable("sessions", env={**env, "ROUNDTABLE_DATA_DIR": str(tmp_path / "file" / "data")})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot create the data folder ")
    assert proc.stderr.count("\n") == 1


def test_a_sqlite_file_that_is_not_a_database_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "roundtable.db").write_text("this is not a database\n" * 100)
    proc = roundtable("sessions", env=env)
    assert proc.returncode == 1
    assert proc.stderr.endswith("is unavailable (DatabaseError: file is not a database)\n")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not JSON; write a JSON object of persona id to model"),
        ("[1, 2]", "Input should be a valid dictionary"),
    ],
)
def test_agent_models_that_are_not_a_json_object_are_one_line(
    value: str, message: str, env: dict[str, str]
) -> None:
    proc = roundtable("sessions", env={**env, "ROUNDTABLE_AGENT_MODELS": value})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: invalid setting ROUNDTABLE_AGENT_MODELS: {message}")
    assert proc.stderr.count("\n") == 1


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_private_and_so_is_its_database(env: dict[str, str], tmp_path: Path) -> None:
    proc = roundtable("sessions", env=env)
    assert proc.returncode == 0, proc.stderr
    data = tmp_path / "data"
    assert _mode(data) == 0o700
    assert _mode(data / "roundtable.db") == 0o600


def test_an_existing_data_dir_and_database_are_made_private(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert roundtable("sessions", env=env).returncode == 0
    data.chmod(0o755)
    (data / "roundtable.db").chmod(0o644)
    proc = roundtable("sessions", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (_mode(data), _mode(data / "roundtable.db")) == (0o700, 0o600)


def test_the_private_redis_files_are_private(env: dict[str, str], tmp_path: Path) -> None:
    """`bus stats` on the default bus starts a private redis-server whose files land in the data dir."""
    bus_vars = ("ROUNDTABLE_BUS_URL", "ROUNDTABLE_REDIS_URL", "REDIS_URL")
    proc = roundtable("bus", "stats", env={k: v for k, v in env.items() if k not in bus_vars})
    assert proc.returncode == 0, proc.stderr
    data = tmp_path / "data"
    assert (data / "redis.log").exists(), "a private redis-server was started in the data folder"
    modes = {p.name: _mode(p) for p in data.iterdir() if p.name in PRIVATE_FILES}
    assert modes == dict.fromkeys(modes, 0o600)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "topic", "--team", ""], "--team is empty; choose from analyst, creative"),
        (["ask", "topic", "--voting", ""], "--voting is empty; choose one of majority, rated, ranked"),
        (["ask", "topic", "--voting", " "], "--voting is empty; choose one of majority, rated, ranked"),
        (["ask", "topic", "--rounds", "abc"], "--rounds 'abc' is not a number; choose 1-5"),
        (["retally", "abc123"], "--voting is required; choose one of majority, rated, ranked"),
    ],
)
def test_empty_and_unparsable_values_are_refused_with_the_choices(
    args: list[str], message: str, env: dict[str, str]
) -> None:
    proc = roundtable(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}")
    assert proc.stderr.count("\n") == 1


CONTROL_TOPIC = "Tea \x1b[31mor\x1b]0;owned\x07 coffee?"


def _interrupted_session(env: dict[str, str], fake_llm: FakeLLM, topic: str) -> str:
    """The id of a session whose `ask` was killed mid-round: stored as `running`, with no result."""
    fake_llm.set(stall=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.app", "ask", topic, "--rounds", "1", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        deadline = time.monotonic() + 60  # only bounds a broken test; nothing asserts the wait
        while fake_llm.request_count == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first turn is asked: the session is stored as running
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert first.startswith("session "), first
    fake_llm.set(stall=False)
    return first.split()[1]


def test_show_says_an_interrupted_session_is_interrupted_and_how_to_resume(
    env: dict[str, str], fake_llm: FakeLLM
) -> None:
    session_id = _interrupted_session(env, fake_llm, "Tea or coffee?")
    proc = roundtable("show", session_id, env={**env, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "Interrupted" in proc.stdout
    assert f"roundtable resume {session_id}" in proc.stdout
    assert "no valid ballot" not in proc.stdout


def test_control_characters_in_a_topic_are_stored_as_given_and_shown_escaped(
    env: dict[str, str], fake_llm: FakeLLM
) -> None:
    session_id = _interrupted_session(env, fake_llm, CONTROL_TOPIC)
    wide = {**env, "COLUMNS": "200"}
    stored = roundtable("show", session_id, "--json", env=wide)
    assert json.loads(stored.stdout)["topic"] == CONTROL_TOPIC
    for args in (["sessions"], ["show", session_id]):
        proc = roundtable(*args, env=wide)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout
        assert "\x07" not in proc.stdout
        assert r"Tea \x1b[31mor\x1b]0;owned\x07 coffee?" in proc.stdout


def test_an_unknown_log_level_is_one_line(env: dict[str, str]) -> None:
    proc = roundtable("sessions", env={**env, "ROUNDTABLE_LOG_LEVEL": "loud"})
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: invalid setting ROUNDTABLE_LOG_LEVEL: 'LOUD'; "
        "choose one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )
