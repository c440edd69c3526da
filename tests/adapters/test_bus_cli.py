"""`roundtable bus ...` as an operator runs it: real processes against a real redis-server.

Each test builds its own workspace with the real delivery layer (mailboxes, a failing handler, an
expired and a malformed entry), then runs the command line and reads its JSON or its text.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import AgentMessage, DeliveryConfig, Mailbox, RedisBus
from bus.addressing import inbox_key
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import roundtable as run_cli
from tests.servers import RedisProcess, free_port

pytestmark = pytest.mark.server  # every test runs the CLI as a process, on a redis-server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path_factory.mktemp("redis-bus-cli")).start()
    yield proc
    proc.stop()


def env_for(workspace: str, redis: RedisProcess, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(data_dir),
        "REDIS_URL": redis.url,
        "ROUNDTABLE_WORKSPACE": workspace,
        # Wide enough that no table cell wraps: pytest-xdist workers run with COLUMNS=80 in their
        # environment, which the CLI would otherwise honour.
        "COLUMNS": "240",
    }


@pytest.fixture
def workspace() -> str:
    """A fresh workspace, for a test that changes what it finds."""
    return f"ops-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(tmp_path: Path, redis: RedisProcess, workspace: str) -> dict[str, str]:
    return env_for(workspace, redis, tmp_path / "data")


@pytest.fixture(scope="module")
def shared(redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, dict[str, str]]:
    """One scene for the tests that only read, and the environment that points at it."""
    workspace = f"ops-{uuid.uuid4().hex[:10]}"
    return build_scene(redis.url, workspace), env_for(workspace, redis, tmp_path_factory.mktemp("data"))


def roundtable(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`roundtable bus <args>`."""
    return run_cli("bus", *args, env=env, timeout=60)


def in_parallel(*calls: tuple[str, ...], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands run side by side: each one mostly waits for Python to start."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: roundtable(*args, env=env), calls))


def as_json(*args: str, env: dict[str, str]) -> Any:
    proc = roundtable(*args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


def note(ws: str, n: int, **options: Any) -> AgentMessage:
    return AgentMessage(
        from_agent="engine",
        to_agent="analyst",
        message_type="notification",
        workspace_id=ws,
        content={"n": n},
        **options,
    )


@dataclass
class Scene:
    """A workspace where `analyst` failed on one message, got an expired and a malformed one, and
    handled two; `skeptic` has three messages waiting, one of them read and not acknowledged."""

    failed: AgentMessage
    expired: AgentMessage
    handled: list[AgentMessage]
    waiting: list[AgentMessage]
    lane: str


def build_scene(url: str, ws: str) -> Scene:
    async def build() -> Scene:
        bus = RedisBus(url)
        try:
            config = DeliveryConfig(max_deliveries=1, block_ms=50)
            analyst = Mailbox(bus, ws, "analyst", config=config)
            skeptic = Mailbox(bus, ws, "skeptic", config=config)
            engine = Mailbox(bus, ws, "engine", config=config)
            await analyst.register()
            await skeptic.register()
            lane = inbox_key(ws, "analyst", 5)
            failed = note(ws, 0, metadata={"fail": "yes"})
            handled = [note(ws, 1), note(ws, 2)]
            await engine.send_many([failed, *handled])
            # Published past the sender's checks, as another program could: expired, and not a message.
            expired = note(ws, 3, timestamp=datetime.now(UTC) - timedelta(hours=1), ttl=60)
            await bus.publish(lane, expired)
            await bus.append(lane, {"junk": "not a message"})

            async def handle(message: AgentMessage) -> None:
                if message.metadata.get("fail"):
                    raise RuntimeError("the handler broke")

            await analyst.serve(handle, idle_stop_ms=100)
            waiting = [note(ws, n).model_copy(update={"to_agent": "skeptic"}) for n in range(3)]
            await engine.send_many(waiting)
            await skeptic.receive(count=1, block_ms=0)  # read, never settled: pending
            return Scene(failed, expired, handled, waiting, lane)
        finally:
            await bus.close()

    return asyncio.run(build())


def receive_once(url: str, ws: str, agent: str) -> list[tuple[str, int]]:
    """What a fresh consumer of `agent` is handed now: (message id, delivery count)."""

    async def receive() -> list[tuple[str, int]]:
        bus = RedisBus(url)
        try:
            box = Mailbox(bus, ws, agent)
            return [(e.message.message_id, e.deliveries) for e in await box.receive(block_ms=0)]
        finally:
            await bus.close()

    return asyncio.run(receive())


def pending_count(url: str, stream: str) -> int:
    async def count() -> int:
        bus = RedisBus(url)
        try:
            return await bus.pending_count(stream, "inbox")
        finally:
            await bus.close()

    return asyncio.run(count())


# --- dead letters ---------------------------------------------------------------------------------


def test_dlq_list_shows_each_dead_letter_with_its_reason(shared: tuple[Scene, dict[str, str]]) -> None:
    scene, env = shared

    page = as_json("dlq", "list", env=env)

    assert page["total"] == 3
    by_reason = {row["reason"]: row for row in page["letters"]}
    assert set(by_reason) == {"handler_failed", "expired", "malformed"}
    assert by_reason["handler_failed"]["message_id"] == scene.failed.message_id
    assert "the handler broke" in by_reason["handler_failed"]["detail"]
    assert by_reason["expired"]["message_id"] == scene.expired.message_id
    assert all(row["agent"] == "analyst" and row["replayed"] is None for row in page["letters"])

    newest, text = in_parallel(("dlq", "list", "--limit", "1", "--json"), ("dlq", "list"), env=env)
    assert [row["id"] for row in json.loads(newest.stdout)["letters"]] == [page["letters"][-1]["id"]]
    assert text.returncode == 0, text.stderr
    assert "handler_failed" in text.stdout
    assert "3 of 3 dead letters" in text.stdout


def test_dlq_show_gives_the_original_message_by_letter_id_or_message_id(
    shared: tuple[Scene, dict[str, str]],
) -> None:
    scene, env = shared
    letters = as_json("dlq", "list", env=env)["letters"]
    failed = next(row for row in letters if row["reason"] == "handler_failed")
    malformed = next(row for row in letters if row["reason"] == "malformed")

    by_id, by_message, junk, text, unknown = in_parallel(
        ("dlq", "show", failed["id"], "--json"),
        ("dlq", "show", scene.failed.message_id, "--json"),
        ("dlq", "show", malformed["id"], "--json"),
        ("dlq", "show", failed["id"]),
        ("dlq", "show", "1-1"),
        env=env,
    )

    view = json.loads(by_id.stdout)
    assert view["message"]["message_id"] == scene.failed.message_id
    assert view["message"]["content"] == {"n": 0}
    assert view["stream"] == scene.lane
    assert view["deliveries"] == 1
    assert json.loads(by_message.stdout)["id"] == failed["id"]
    assert json.loads(junk.stdout)["message"] is None
    assert json.loads(junk.stdout)["original"] == {"junk": "not a message"}
    assert text.returncode == 0
    assert "the handler broke" in text.stdout
    line = one_line_error(unknown)
    assert "no dead letter '1-1'" in line
    assert "roundtable bus dlq list" in line


def test_dlq_replay_sends_the_message_again_with_a_fresh_delivery_count_once(
    redis: RedisProcess, workspace: str, env: dict[str, str]
) -> None:
    scene = build_scene(redis.url, workspace)
    failed = next(r for r in as_json("dlq", "list", env=env)["letters"] if r["reason"] == "handler_failed")

    [outcome] = as_json("dlq", "replay", failed["id"], env=env)

    assert outcome["status"] == "replayed"
    assert outcome["stream"] == scene.lane
    assert receive_once(redis.url, workspace, "analyst") == [(scene.failed.message_id, 1)]
    again, listed = in_parallel(("dlq", "replay", failed["id"]), ("dlq", "list", "--json"), env=env)
    assert again.returncode == 1
    assert "replayed already" in again.stdout
    marks = {r["id"]: r["replayed"] for r in json.loads(listed.stdout)["letters"]}
    assert marks[failed["id"]]["entry_id"] == outcome["entry_id"]  # the letter is kept, and marked


def test_dlq_replay_all_skips_what_cannot_be_sent_and_what_was_sent(
    redis: RedisProcess, workspace: str, env: dict[str, str]
) -> None:
    scene = build_scene(redis.url, workspace)

    outcomes = {o["message_id"]: o for o in as_json("dlq", "replay", "--all", env=env)}

    assert outcomes[scene.failed.message_id]["status"] == "replayed"
    assert outcomes[scene.expired.message_id]["status"] == "skipped"
    assert "ttl passed" in outcomes[scene.expired.message_id]["reason"]
    assert outcomes[""]["status"] == "skipped"
    assert "not a message" in outcomes[""]["reason"]
    second = as_json("dlq", "replay", "--all", env=env)
    assert [o["status"] for o in second] == ["skipped"] * 3
    assert receive_once(redis.url, workspace, "analyst") == [(scene.failed.message_id, 1)]


# --- find and replay ------------------------------------------------------------------------------


def test_find_locates_a_message_and_where_it_stands(shared: tuple[Scene, dict[str, str]]) -> None:
    scene, env = shared

    handled, failed, pending, waiting, missing = in_parallel(
        ("find", scene.handled[0].message_id, "--json"),
        ("find", scene.failed.message_id, "--json"),
        ("find", scene.waiting[0].message_id, "--json"),
        ("find", scene.waiting[1].message_id),
        ("find", "no-such-id"),
        env=env,
    )

    [hit] = json.loads(handled.stdout)
    assert (hit["kind"], hit["stream"]) == ("message", scene.lane)
    assert hit["groups"] == [
        {"group": "inbox", "state": "acknowledged", "consumer": None, "deliveries": None}
    ]
    assert {"dead_letter", "message"} <= {h["kind"] for h in json.loads(failed.stdout)}
    [state] = json.loads(pending.stdout)[0]["groups"]
    assert (state["state"], state["deliveries"]) == ("pending", 1)
    assert waiting.returncode == 0
    assert "group inbox: waiting" in waiting.stdout
    assert missing.returncode == 1
    assert "no entry has message id 'no-such-id'" in missing.stdout


def test_replay_reads_a_stream_back_from_an_id_or_a_time(
    redis: RedisProcess, shared: tuple[Scene, dict[str, str]]
) -> None:
    scene, env = shared
    everything = as_json("replay", "inbox:analyst:p5", env=env)
    ids = [e["entry_id"] for e in everything]
    assert len(ids) == 5  # the failed, two handled, the expired, the malformed entry
    assert [e["message"]["message_id"] for e in everything[:3]] == [
        scene.failed.message_id,
        *(m.message_id for m in scene.handled),
    ]
    assert everything[4]["message"] is None
    assert everything[4]["fields"] == {"junk": "not a message"}

    start, since, future, text = in_parallel(
        ("replay", "inbox:analyst:p5", "--from", ids[2], "--json"),
        ("replay", scene.lane, "--since", "10m", "--json"),
        ("replay", "inbox:analyst:p5", "--since", "2999-01-01T00:00:00Z", "--json"),
        ("replay", "inbox:analyst:p5", "--limit", "2"),
        env=env,
    )

    assert [e["entry_id"] for e in json.loads(start.stdout)] == ids[2:]
    assert [e["entry_id"] for e in json.loads(since.stdout)] == ids
    assert json.loads(future.stdout) == []
    assert text.returncode == 0
    assert "engine → analyst" in text.stdout
    assert "2 entries; --limit shows more" in text.stdout
    assert pending_count(redis.url, scene.lane) == 0  # read back, not consumed: nothing pending


def test_replay_refuses_bad_input_in_one_line(shared: tuple[Scene, dict[str, str]]) -> None:
    _, env = shared
    unknown, start, elsewhere, limit = in_parallel(
        ("replay", "inbox:nobody:p5"),
        ("replay", "inbox:analyst:p5", "--from", "x"),
        ("replay", "rt:{elsewhere}:dlq"),
        ("dlq", "list", "--limit", "0"),
        env=env,
    )
    line = one_line_error(unknown)
    assert "no stream 'inbox:nobody:p5'" in line
    assert "inbox:analyst:p5" in line
    assert "entry id 'x' is not a stream id" in one_line_error(start)
    assert "not in workspace" in one_line_error(elsewhere)
    assert "--limit" in one_line_error(limit)


def test_an_invalid_argument_is_named_by_its_flag(shared: tuple[Scene, dict[str, str]]) -> None:
    """The bus names its parameters (since, start); the command line says the flags the user typed."""
    _, env = shared
    since, both, blank = in_parallel(
        ("replay", "inbox:analyst:p5", "--since", "yesterday"),
        ("replay", "dlq", "--from", "0-1", "--since", "1h"),
        ("find", " "),
        env=env,
    )
    line = one_line_error(since)
    assert line.startswith("error: --since 'yesterday' is not a time;")
    assert "2025-01-31T12:00:00Z" in line  # the forms it takes
    assert "90s, 10m, 2h, 1d" in line
    assert one_line_error(both) == "error: --from and --since cannot be given together; give one or the other"
    assert one_line_error(blank).startswith("error: MESSAGE_ID is blank;")


def test_dlq_replay_needs_an_id_or_all_but_not_both(shared: tuple[Scene, dict[str, str]]) -> None:
    _, env = shared
    neither, both = in_parallel(("dlq", "replay"), ("dlq", "replay", "1-1", "--all"), env=env)
    assert "name a dead letter id, or --all" in one_line_error(neither)
    assert "not both" in one_line_error(both)


# --- statistics -----------------------------------------------------------------------------------


def test_stats_shows_length_pending_lag_and_consumers_per_stream(
    shared: tuple[Scene, dict[str, str]],
) -> None:
    _, env = shared

    listed, everything, text = in_parallel(
        ("stats", "--json"), ("stats", "--all", "--json"), ("stats",), env=env
    )

    rows = {row["stream"].split("}:")[1]: row for row in json.loads(listed.stdout)}
    assert {"inbox:analyst:p5", "inbox:skeptic:p5", "dlq"} <= set(rows)
    assert all(row["length"] for row in rows.values())  # the empty lanes are left out
    [skeptic] = rows["inbox:skeptic:p5"]["groups"]
    assert rows["inbox:skeptic:p5"]["length"] == 3
    assert (skeptic["name"], skeptic["pending"], skeptic["lag"]) == ("inbox", 1, 2)
    assert [c["pending"] for c in skeptic["consumers"]] == [1]
    [analyst] = rows["inbox:analyst:p5"]["groups"]
    assert (rows["inbox:analyst:p5"]["length"], analyst["pending"], analyst["lag"]) == (5, 0, 0)
    assert rows["dlq"]["length"] == 3
    assert rows["dlq"]["groups"] == []
    lanes = [row for row in json.loads(everything.stdout) if ":inbox:" in row["stream"]]
    assert len(lanes) == 2 * 10  # every lane of both agents
    assert text.returncode == 0
    assert "inbox:skeptic:p5" in text.stdout


# --- metrics of a worker --------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_worker_serves_its_bus_metrics_on_the_metrics_port(
    redis: RedisProcess, workspace: str, env: dict[str, str], fake_llm: FakeLLM
) -> None:
    port = free_port()
    env = {**env, "ROUNDTABLE_MODEL": "openai/fake", "ROUNDTABLE_API_BASE": fake_llm.base_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli.app",
            "worker",
            "--agents",
            "analyst",
            "--metrics-port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        url = f"http://127.0.0.1:{port}/metrics"
        assert proc.stderr.readline().strip() == f"metrics at {url}"
        assert proc.stderr.readline().startswith("serving analyst on redis at ")
        group = frozenset({"workspace": workspace, "agent": "analyst", "group": "inbox"}.items())
        assert scrape(url)[("roundtable_bus_consumer_lag", group)] == 0

        # Not a turn request: the worker settles it as handled without asking the model.
        message = AgentMessage(
            from_agent="ops", to_agent="analyst", message_type="notification", workspace_id=workspace
        )
        asyncio.run(send(redis.url, message))
        labels = {"workspace": workspace, "agent": "analyst"}
        handled = (
            "roundtable_bus_messages_acknowledged_total",
            frozenset({**labels, "outcome": "handled"}.items()),
        )
        samples = scrape(url)
        while samples.get(handled, 0) < 1:  # until the worker has settled it
            samples = scrape(url)
        samples = scrape(url)  # the backlog is read from Redis first: now past the acknowledgement
        assert samples[("roundtable_bus_messages_delivered_total", frozenset(labels.items()))] == 1
        ok = frozenset({**labels, "outcome": "ok"}.items())
        assert samples[("roundtable_bus_handling_seconds_count", ok)] == 1
        assert samples[("roundtable_bus_pending", group)] == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


async def send(url: str, message: AgentMessage) -> None:
    bus = RedisBus(url)
    try:
        await Mailbox(bus, message.workspace_id, message.from_agent).send(message)
    finally:
        await bus.close()


def test_a_taken_metrics_port_is_one_line(
    redis: RedisProcess, env: dict[str, str], fake_llm: FakeLLM
) -> None:
    env = {**env, "ROUNDTABLE_MODEL": "openai/fake", "ROUNDTABLE_API_BASE": fake_llm.base_url}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli.app",
                "worker",
                "--agents",
                "analyst",
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
    line = one_line_error(proc, 1)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line
    assert "--metrics-port" in line
