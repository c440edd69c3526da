"""The example agent (`examples/echo_agent.py`) runs as its own process and answers over a real Redis."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bus import Bus, ContainerAgent, Registry

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("bus", ["redis"], indirect=True)
async def test_the_echo_example_answers_collaborate_with_and_request_then_stops_on_sigterm(
    bus: Bus, redis_url: str, workspace: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "echo_agent.py"), redis_url, workspace, cwd=ROOT
    )
    asker = ContainerAgent(bus, "asker", workspace=workspace)
    try:
        assert await Registry(bus, workspace).wait_for(["echo"], timeout_s=30) == []
        [card] = await asker.registry.discover(capability="echo")
        assert card.agent == "echo"

        assert await asker.collaborate_with("echo", {"text": "hi"}, timeout=10) == {
            "echo": {"text": "hi"},
            "to": "asker",
        }
        response = await asker.request("echo", {"n": 1}, timeout=10, metadata={"kind": "task"})
        assert response.content == {"echo": {"n": 1}, "to": "asker"}

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    finally:
        await asker.stop()
        if process.returncode is None:
            process.kill()
            await process.wait()
