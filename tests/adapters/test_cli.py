"""The `roundtable` command line as scripts use it: real processes, exit codes, one JSON document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.helpers import roundtable
from tests.servers import RedisProcess

pytestmark = pytest.mark.server  # every test runs the CLI as a process

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_INPUT = {
    "rule": "ranked",
    "candidates": ["P1", "P2", "P3"],
    "authors": {"P1": "analyst", "P2": "creative", "P3": "skeptic"},
    "recusal": False,
    "seed": 0,
    "ballots": [
        {"voter": "analyst", "ranking": ["P2", "P1", "P3"]},
        {"voter": "creative", "ranking": ["P1", "P3", "P2"]},
        {"voter": "skeptic", "ranking": ["P3", "P2", "P1"]},
        {"voter": "pragmatist", "ranking": ["P2", "P1", "P3"]},
        {"voter": "ethicist", "ranking": ["P1", "P2", "P3"]},
    ],
}


@pytest.fixture(scope="module")
def redis_cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    proc = RedisProcess(tmp_path_factory.mktemp("redis-cli")).start()
    yield proc
    proc.stop()


@pytest.fixture
def env(tmp_path: Path, fake_llm: FakeLLM, redis_cli: RedisProcess) -> dict[str, str]:
    return {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_cli.url,
        "ROUNDTABLE_WORKSPACE": tmp_path.name[-20:],
        "ROUNDTABLE_MODEL": "openai/fake",
        "ROUNDTABLE_API_BASE": fake_llm.base_url,
        "ROUNDTABLE_API_KEY": "sk-fake",
    }


def test_tally_prints_the_contract_output() -> None:
    proc = roundtable("tally", stdin=json.dumps(CONTRACT_INPUT))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["scores"] == {"P1": 6, "P2": 6, "P3": 3}
    assert (out["winner"], out["tiebreak"], out["condorcet_winner"]) == ("P2", "head_to_head", "P2")
    assert list(out) == [
        "rule",
        "winner",
        "scores",
        "ranking",
        "tied",
        "tiebreak",
        "valid_ballots",
        "abstentions",
        "invalid",
        "consensus",
        "score_share",
        "absolute_majority",
        "unanimity_reached",
        "fallback",
        "condorcet_winner",
    ]


def test_tally_jsonl_reports_a_bad_line_and_goes_on() -> None:
    lines = "\n".join(
        [json.dumps(CONTRACT_INPUT), "{not json", json.dumps({**CONTRACT_INPUT, "rule": "condorcet"})]
    )
    proc = roundtable("tally", "--jsonl", stdin=lines)
    assert proc.returncode == 0
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("winner") for r in results] == ["P2", None, "P2"]
    assert "error" in results[1]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["tally"], "not json", "not JSON"),
        (["tally", "--rule", "rnaked"], json.dumps(CONTRACT_INPUT), "choose one of majority, rated, ranked"),
        (["tally"], json.dumps({**CONTRACT_INPUT, "candidates": []}), "candidates"),
        (["ask", "topic", "--rounds", "9"], "", "--rounds 9 is out of range; choose 1-5"),
        (["ask", "topic", "--voting", "rnaked"], "", "unknown voting rule 'rnaked'; choose one of majority"),
        (["ask", "topic", "--team", "analyst,skeptik"], "", "unknown persona 'skeptik'"),
        (["ask", "   "], "", "the topic is empty"),
        (["ask", "x" * 10_000], "", "the topic is 10000 characters; the limit is 4000"),
        (["ask", "topic", "--frobnicate"], "", "No such option: --frobnicate"),
        (["ask", "topic", "--rounds", "many"], "", "--rounds 'many' is not a number; choose 1-5"),
        (["show", "nope"], "", "no session 'nope'"),
        (
            ["sessions", "--status", "lost"],
            "",
            "unknown status 'lost'; choose one of running, completed, failed",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], stdin: str, message: str, env: dict[str, str]
) -> None:
    proc = roundtable(*args, env=env, stdin=stdin)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_bad_setting_in_the_environment_is_one_line(env: dict[str, str]) -> None:
    proc = roundtable("sessions", env={**env, "ROUNDTABLE_ROUNDS": "9"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: invalid setting ROUNDTABLE_ROUNDS: Input should be less than or equal to 5"
    ]


def test_ask_json_prints_one_document_and_the_session_id_first(
    env: dict[str, str], fake_llm: FakeLLM
) -> None:
    proc = roundtable(
        "ask", "Tabs or spaces?", "--rounds", "1", "--voting", "majority", "--json", "--seed", "3", env=env
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.stderr.splitlines()[0] == f"session {doc['session_id']}"
    assert doc["status"] == "completed"
    assert doc["voting_rule"] == "majority"
    assert doc["usage"]["llm_calls"] == fake_llm.request_count

    shown = json.loads(roundtable("show", doc["session_id"], "--json", env=env).stdout)
    assert shown == doc
    listed = json.loads(roundtable("sessions", "--json", env=env).stdout)
    assert [s["id"] for s in listed] == [doc["session_id"]]
    stats = json.loads(roundtable("stats", "--json", env=env).stdout)
    assert stats["rules"][0]["voting_rule"] == "majority"
    assert stats["rules"][0]["sessions"] == 1
    recount = roundtable("retally", doc["session_id"], "--voting", "unanimity", "--json", env=env)
    assert recount.returncode == 0, recount.stderr
    assert json.loads(recount.stdout)["tally"]["rule"] == "unanimity"
    across = roundtable("retally", doc["session_id"], "--voting", "ranked", "--json", env=env)
    assert across.returncode == 0, across.stderr
    assert json.loads(across.stdout)["tally"]["rule"] == "ranked"


def test_without_a_redis_url_a_private_redis_server_serves_and_stops(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in env.items() if k not in ("REDIS_URL", "ROUNDTABLE_REDIS_URL")}
    proc = roundtable("ask", "Tea or coffee?", "--rounds", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    data = tmp_path / "data"
    assert (data / "redis.log").exists(), "a private redis-server was started in the data folder"
    assert not (data / "redis.pid").exists(), "the private redis-server must stop when `ask` exits"


def test_ask_renders_a_readable_result(env: dict[str, str]) -> None:
    proc = roundtable("ask", "Tabs or spaces?", "--rounds", "1", "--seed", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "consensus" in proc.stdout
    assert "Votes" in proc.stdout
    assert "proposed by" in proc.stdout
    assert "█" in proc.stdout


def test_a_degraded_session_says_so_above_the_result(env: dict[str, str], fake_llm: FakeLLM) -> None:
    fake_llm.set(
        responder=lambda body: "garbage" if "You are Skeptic" in body["messages"][0]["content"] else None
    )
    proc = roundtable("ask", "Tabs or spaces?", "--rounds", "1", "--seed", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.index("degraded") < proc.stdout.index("proposed by")


def test_ask_killed_mid_round_resumes_without_repeating_turns(
    env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """kill -9 a real `ask` mid-discussion; `resume` finishes it and pays only for what was missing."""
    fake_llm.set(latency_s=0.15)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli.app",
            "ask",
            "Rent or buy?",
            "--rounds",
            "3",
            "--no-early-stop",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline().strip()
    assert first.startswith("session ")
    session_id = first.split()[1]
    completed = 0
    deadline = time.monotonic() + 60
    while completed < 7 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if " ok:" in line or " fallback:" in line:
            completed += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert completed >= 7
    asked_before = fake_llm.request_count

    resumed = roundtable("resume", session_id, "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "completed"
    assert doc["rounds_run"] == 3
    assert len(doc["transcript"]) == 15
    # Every turn of the final document was paid for exactly once: turns finished before the kill were
    # not asked again, so the resumed run made at most (25 - completed) calls.
    assert fake_llm.request_count - asked_before <= 25 - completed
    assert doc["usage"]["llm_calls"] <= fake_llm.request_count


def test_worker_serves_personas_until_terminated(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.app", "worker", "--agents", "analyst,skeptic"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("serving analyst, skeptic on redis at ")
    proc.terminate()
    assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "analyst,bogus"], "unknown persona 'bogus'; choose from analyst, creative"),
        (["--agents", "analyst", "--team", "full"], "give --agents or --team, not both"),
    ],
)
def test_worker_refuses_bad_personas(args: list[str], message: str, env: dict[str, str]) -> None:
    proc = roundtable("worker", *args, env=env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "unset", "expected"),
    [
        (("discord",), "DISCORD_TOKEN", "https://discord.com/developers/applications"),
        (("slack",), "SLACK_BOT_TOKEN", "OAuth & Permissions"),
        (("slack", "--http", "--port", "3999"), "SLACK_SIGNING_SECRET", "Basic Information"),
    ],
)
def test_a_bot_without_its_token_says_where_to_get_one(
    env: dict[str, str], args: tuple[str, ...], unset: str, expected: str
) -> None:
    env = {k: v for k, v in env.items() if not k.startswith(("DISCORD_", "SLACK_"))}
    if unset == "SLACK_SIGNING_SECRET":
        env["SLACK_BOT_TOKEN"] = "xoxb-test"
    result = roundtable(*args, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {unset} is not set")
    assert expected in lines[0]
