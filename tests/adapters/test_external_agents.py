"""`roundtable ask --external-agents` with real `roundtable worker` processes, a real redis-server and
the fake LLM: the turns go to the workers, several workers share a persona, a missing team fails in one
line, and a worker killed with kill -9 mid-turn is replaced by another without a degraded turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from bus import AgentCard, BusEvent, RedisBus, Registry, fetch_events
from bus.addressing import INBOX_GROUP, inbox_lanes
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import agent_of
from tests.servers import RedisProcess

ROOT = Path(__file__).resolve().parents[2]
TEAM = "analyst,skeptic"
#: A worker that stops heartbeating loses its turn after this long: short, so the test is fast, yet long
#: enough that a live worker on a loaded 2-core machine keeps its turn.
IDLE_S = 3.0
ASK_ARGS = ("ask", "Rent or buy?", "--team", TEAM, "--rounds", "1", "--json", "--external-agents")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path_factory.mktemp("redis-external")).start()
    yield proc
    proc.stop()


@pytest.fixture
def env(tmp_path: Path, fake_llm: FakeLLM, redis_server: RedisProcess) -> dict[str, str]:
    """Settings shared by `ask` and its workers: one bus, one workspace, the fake LLM, short timeouts."""
    return {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(tmp_path / "data"),
        "ROUNDTABLE_BUS_URL": redis_server.url,
        "ROUNDTABLE_WORKSPACE": f"ext-{tmp_path.name[-16:]}",
        "ROUNDTABLE_MODEL": "openai/fake",
        "ROUNDTABLE_API_BASE": fake_llm.base_url,
        "ROUNDTABLE_API_KEY": "sk-fake",
        "ROUNDTABLE_BUS_IDLE_TIMEOUT_S": str(IDLE_S),
        "ROUNDTABLE_OFFLINE_AFTER_S": "3",
        # A turn taken over after the idle timeout must still be in time.
        "ROUNDTABLE_TURN_TIMEOUT_S": "30",
        "ROUNDTABLE_EXTERNAL_WAIT_S": "20",
    }


def without_model(env: dict[str, str]) -> dict[str, str]:
    """`ask --external-agents` needs no model of its own: the workers call it."""
    return {
        k: v
        for k, v in env.items()
        if k not in ("ROUNDTABLE_MODEL", "ROUNDTABLE_API_BASE", "ROUNDTABLE_API_KEY")
    }


class Worker:
    """A `roundtable worker` process; its standard error is drained in a thread, so it never blocks."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli.app", "worker", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.name = ""
        self.lines: list[str] = []

    def ready(self) -> Worker:
        """Wait for the worker's first line: it is registered, and says its name."""
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        match = re.fullmatch(r"serving (.+) on redis at \S+ as (\S+)\n", first)
        assert match, f"unexpected first line from the worker: {first!r}"
        self.agents = match[1].split(", ")
        self.name = match[2]
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=20)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start(workers: list[Worker], env: dict[str, str], count: int, *args: str) -> None:
    """Start `count` workers at once, and wait until each is registered."""
    new = [Worker(env, *args) for _ in range(count)]
    workers.extend(new)
    for worker in new:
        worker.ready()


@pytest.fixture
def workers(env: dict[str, str]) -> Iterator[list[Worker]]:
    """The workers a test started (with `start`); any still running is killed at the end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=10)


def ask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli.app", "ask", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def registry_view(env: dict[str, str]) -> tuple[dict[str, AgentCard], list[BusEvent]]:
    """The registry's cards (online or not) and the events stream, read as any program would."""

    async def read() -> tuple[dict[str, AgentCard], list[BusEvent]]:
        bus = RedisBus(env["ROUNDTABLE_BUS_URL"])
        try:
            workspace = env["ROUNDTABLE_WORKSPACE"]
            cards = await Registry(bus, workspace).discover(online_only=False)
            events = [e for _, e in await fetch_events(bus, workspace, count=1000)]
            return {c.agent: c for c in cards}, events
        finally:
            await bus.close()

    return asyncio.run(read())


def register(env: dict[str, str], card: AgentCard) -> None:
    async def write() -> None:
        bus = RedisBus(env["ROUNDTABLE_BUS_URL"])
        try:
            await Registry(bus, env["ROUNDTABLE_WORKSPACE"]).register(card)
        finally:
            await bus.close()

    asyncio.run(write())


def test_two_workers_serve_the_team_sharing_each_persona_and_each_turn_is_answered_once(
    env: dict[str, str], fake_llm: FakeLLM, workers: list[Worker]
) -> None:
    # The default idle timeout: no turn is taken over from a worker slowed by a loaded machine.
    env = {**env, "ROUNDTABLE_BUS_IDLE_TIMEOUT_S": "30", "ROUNDTABLE_OFFLINE_AFTER_S": "15"}
    start(workers, env, 2, "--agents", TEAM)
    cards, _ = registry_view(env)
    assert sorted(cards["analyst"].instances) == sorted(w.name for w in workers)
    assert cards["skeptic"].capabilities == ["persona:skeptic", "deliberate"]

    proc = ask(
        without_model(env), "Tabs or spaces?", "--team", TEAM, "--rounds", "1", "--json", "--external-agents"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.stderr.splitlines()[0] == f"session {doc['session_id']}"
    assert doc["status"] == "completed"
    assert doc["degraded"] == []
    assert [t["agent"] for t in doc["transcript"]] == ["analyst", "skeptic"]
    # Every turn was answered by one worker only: the model was called once per turn, no more.
    assert fake_llm.request_count == doc["usage"]["llm_calls"] > 0

    for worker in workers:
        worker.proc.terminate()
    assert [worker.proc.wait(timeout=20) for worker in workers] == [0, 0]
    cards, events = registry_view(env)
    assert cards == {}, "workers leave the registry when they stop"
    for agent in ("analyst", "skeptic"):
        left = [e for e in events if e.kind == "left" and e.agent == agent]
        # Stopping at the same moment, both may see no one else left; at least the last to leave does,
        # though its event need not be the last written.
        assert sorted(e.instance for e in left) == sorted(w.name for w in workers)
        assert "offline" in {e.status for e in left}


def test_ask_names_the_personas_no_worker_serves_and_records_no_session(env: dict[str, str]) -> None:
    env = {**env, "ROUNDTABLE_EXTERNAL_WAIT_S": "0.5", "ROUNDTABLE_OFFLINE_AFTER_S": "60"}
    proc = ask(
        without_model(env), "Tabs or spaces?", "--team", "analyst,skeptic,ethicist", "--external-agents"
    )
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: no worker serves analyst, skeptic, ethicist in workspace ")
    assert "roundtable worker --agents analyst,skeptic,ethicist" in line

    register(env, AgentCard(agent="skeptic", capabilities=["persona:skeptic"]))  # any program may serve it
    proc = ask(
        without_model(env), "Tabs or spaces?", "--team", "analyst,skeptic,ethicist", "--external-agents"
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: no worker serves analyst, ethicist in workspace ")
    listed = subprocess.run(
        [sys.executable, "-m", "adapters.cli.app", "sessions", "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert json.loads(listed.stdout) == []


def test_external_agents_on_the_in_memory_bus_is_refused_in_one_line(env: dict[str, str]) -> None:
    proc = ask(
        {**without_model(env), "ROUNDTABLE_BUS_URL": "memory://"}, "Tabs or spaces?", "--external-agents"
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert "in-memory bus" in line
    assert "ROUNDTABLE_BUS_URL" in line


def test_a_worker_killed_mid_turn_is_replaced_by_another_and_the_session_is_not_degraded(
    env: dict[str, str], fake_llm: FakeLLM, workers: list[Worker]
) -> None:
    """Two workers serve both personas. The one that took the analyst's first turn is killed with
    kill -9 while its model call hangs; after the idle timeout the other takes the turn over."""
    started, release = threading.Event(), threading.Event()
    first_call = threading.Lock()

    def hang_first_analyst_call(body: dict[str, Any]) -> str | None:
        if agent_of(body) == "analyst" and first_call.acquire(blocking=False):
            started.set()
            release.wait(60)
        return None

    fake_llm.set(responder=hang_first_analyst_call)
    start(workers, env, 2, "--agents", TEAM)
    asking = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.app", *ASK_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=without_model(env),
        cwd=ROOT,
    )
    try:
        assert started.wait(60), "the analyst's first turn never reached the model"
        holder = holder_of_analyst_turn(env)
        [victim] = [w for w in workers if w.name == holder]
        victim.kill()
        out, err = asking.communicate(timeout=90)
    finally:
        release.set()
        if asking.poll() is None:
            asking.kill()
    assert asking.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "completed"
    assert doc["degraded"] == [], "the turn was taken over, not given up"
    assert [(t["agent"], t["fallback"]) for t in doc["transcript"]] == [
        ("analyst", False),
        ("skeptic", False),
    ]
    analyst_calls = [b for b in fake_llm.requests if agent_of(b) == "analyst"]
    assert analyst_calls[0]["messages"] == analyst_calls[1]["messages"], "the same turn was asked again"

    [survivor] = [w for w in workers if w is not victim]

    def only_the_survivor_serves() -> bool:
        cards, events = registry_view(env)
        reported = {e.agent for e in events if e.kind == "status" and e.instance == victim.name}
        return reported == {"analyst", "skeptic"} and all(
            (c.status, c.instances) == ("online", [survivor.name]) for c in cards.values()
        )

    # The survivor's sweep reports the dead worker's instance as silent, and forgets it.
    deadline = time.monotonic() + 20
    while not only_the_survivor_serves():
        assert time.monotonic() < deadline, f"the registry still shows {registry_view(env)[0]}"
        time.sleep(0.1)


def holder_of_analyst_turn(env: dict[str, str]) -> str:
    """The worker (consumer) holding the analyst's pending turn request, as Redis says."""
    client = Redis.from_url(env["ROUNDTABLE_BUS_URL"], decode_responses=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for lane in inbox_lanes(env["ROUNDTABLE_WORKSPACE"], "analyst"):
                if not client.exists(lane):
                    continue
                pending = client.xpending_range(lane, INBOX_GROUP, min="-", max="+", count=10)
                if pending:
                    return str(pending[0]["consumer"])
            time.sleep(0.05)
    finally:
        client.close()
    pytest.fail("no worker holds the analyst's turn")


def test_resume_with_external_agents_finishes_a_killed_session_on_the_workers(
    env: dict[str, str], fake_llm: FakeLLM, workers: list[Worker]
) -> None:
    """`ask --external-agents` is killed while the skeptic's turn hangs; `resume --external-agents`
    finishes the session on the same workers, asking only for the turns that were missing."""
    env = {**env, "ROUNDTABLE_BUS_IDLE_TIMEOUT_S": "30", "ROUNDTABLE_OFFLINE_AFTER_S": "15"}
    hanging, release = threading.Event(), threading.Event()

    def hang_skeptic(body: dict[str, Any]) -> str | None:
        if agent_of(body) == "skeptic" and not release.is_set():
            hanging.set()
            release.wait(60)
        return None

    fake_llm.set(responder=hang_skeptic)
    start(workers, env, 1, "--agents", TEAM)
    asking = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.app", *ASK_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=without_model(env),
        cwd=ROOT,
    )
    try:
        assert hanging.wait(60), "the skeptic's turn never reached the model"
        assert asking.stderr is not None
        session_id = asking.stderr.readline().split()[1]
        deadline = time.monotonic() + 20  # the analyst's turn is in the event log before the kill
        while not any(agent_of(b) == "analyst" for b in fake_llm.requests):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        asking.kill()
        asking.wait(timeout=10)
    finally:
        release.set()
        if asking.poll() is None:
            asking.kill()
    # The killed `ask` left the worker holding a stale turn; a fresh worker takes the resumed ones.
    workers[0].kill()
    start(workers, env, 1, "--agents", TEAM)
    calls_before = fake_llm.request_count
    proc = subprocess.run(
        [sys.executable, "-m", "adapters.cli.app", "resume", session_id, "--json", "--external-agents"],
        capture_output=True, text=True, env=without_model(env), cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["session_id"] == session_id
    assert doc["status"] == "completed"
    assert [t["agent"] for t in doc["transcript"]] == ["analyst", "skeptic"]
    resumed = [(agent_of(b), schema_name(b)) for b in fake_llm.requests[calls_before:]]
    assert ("skeptic", "discussion_turn") in resumed, "the missing turn was asked for"
    assert ("analyst", "discussion_turn") not in resumed, "the analyst's completed turn was not asked again"


def schema_name(body: dict[str, Any]) -> str:
    return str(((body.get("response_format") or {}).get("json_schema") or {}).get("name", ""))
