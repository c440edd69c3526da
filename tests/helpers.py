"""Helpers shared by test modules: waiting on outcomes, reading fake-LLM requests, bus clean-up,
metrics scrapes and the `roundtable` command line.

Test modules import from here, never from one another; fixtures live in the nearest common
`conftest.py`. Fake outside services are in `tests/fakes/`, server processes in `tests/servers.py`.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bus import AgentMessage, Bus, BusMetrics, Delivery
from bus.nats.names import CLAIMS_BUCKET, MAPS_BUCKET, workspace_subjects
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

# --- waiting ----------------------------------------------------------------------------------------


async def eventually(probe: Callable[[], Awaitable[T]], *, within_s: float = 20.0) -> T:
    """Call `probe` until it returns something truthy, and return that; fail the test after `within_s`.

    For outcomes that arrive on their own timer (redelivery, heartbeats, a handler in another task).
    The bound only decides when a broken test gives up: no test asserts how long the wait took.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not (outcome := await probe()):
        if loop.time() > deadline:
            pytest.fail(f"the expected outcome never came within {within_s:g}s (last: {outcome!r})")
        await asyncio.sleep(0.02)
    return outcome


# --- the bus ----------------------------------------------------------------------------------------


def need(bus: Bus, capability: str) -> None:
    """Skip the rest of a test on a backend that says it cannot give `capability`, with its reason."""
    reason = getattr(bus, "unsupported", {}).get(capability)
    if reason:
        pytest.skip(f"{bus.name} backend: {reason}")


def entry_ids(deliveries: list[Delivery]) -> list[str]:
    return [d.entry_id for d in deliveries]


def workspace_of(prefix: str) -> str:
    """The workspace whose keys fall under a test's key prefix (`rt:{<workspace>}:`)."""
    return prefix.removeprefix("rt:{").removesuffix("}:")


def notification(workspace: str, to: str, n: int, **fields: Any) -> AgentMessage:
    """A notification from the engine to `to`, numbered `n` in its content."""
    return AgentMessage(
        from_agent="engine",
        to_agent=to,
        message_type="notification",
        workspace_id=workspace,
        content={"n": n},
        **fields,
    )


async def delete_redis_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix`, so that a shared server keeps only its own data."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def delete_nats_prefix(url: str, prefix: str) -> None:
    """Delete the streams and KV keys of the workspace under `prefix` on a NATS server."""
    subjects = workspace_subjects(workspace_of(prefix))
    client = await nats.connect(url)
    try:
        names = await client.request("$JS.API.STREAM.NAMES", json.dumps({"subject": subjects}).encode())
        for name in json.loads(names.data).get("streams") or []:
            await client.request(f"$JS.API.STREAM.DELETE.{name}", b"")
        for bucket in (CLAIMS_BUCKET, MAPS_BUCKET):
            purge = json.dumps({"filter": f"$KV.{bucket}.{subjects}"}).encode()
            await client.request(f"$JS.API.STREAM.PURGE.KV_{bucket}", purge)
    finally:
        await client.close()


# --- metrics ----------------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(metrics: BusMetrics) -> Samples:
    """GET /metrics from a real server: sample (name, labels) -> value."""
    server = await metrics.serve(free_port())
    try:
        async with aiohttp.ClientSession() as session, session.get(server.url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.close()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels; 0 when it was never reported."""
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- requests to the fake LLM -----------------------------------------------------------------------


def agent_of(body: dict[str, Any]) -> str:
    """Which persona a request to the fake LLM comes from (its system prompt says who it is)."""
    system = body["messages"][0]["content"]
    match = re.search(r"You are (\w+)", system)
    return match.group(1).lower() if match else "?"


def schema_of(body: dict[str, Any]) -> str:
    """The name of the output schema a request asks for: which step it is a turn of."""
    fmt = body.get("response_format") or {}
    return str((fmt.get("json_schema") or {}).get("name", ""))


def is_repair(body: dict[str, Any]) -> bool:
    """Whether a request retries a turn whose first reply did not fit its schema."""
    return len(body["messages"]) > 2


def discussion(message: str, position: str, ready: bool) -> str:
    """A discussion turn as the LLM writes it."""
    return json.dumps({"message": message, "position": position, "ready": ready})


#: The session document's keys (docs/cli.md), in the order scripts have always read them.
CONTRACT_KEYS = [
    "session_id",
    "status",
    "topic",
    "voting_rule",
    "team",
    "rounds_planned",
    "rounds_run",
    "stopped_early",
    "stop_reason",
    "winner",
    "tally",
    "proposals",
    "ballots",
    "transcript",
    "degraded",
    "usage",
    "duration_s",
    "seed",
    "model",
]


# --- the command line -------------------------------------------------------------------------------


def roundtable(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`roundtable <args>` in a fresh process, as a user runs it (`env` None: this process's)."""
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
