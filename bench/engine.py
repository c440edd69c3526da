"""Engine benchmark: overhead over the critical path, a sequential baseline, context growth.

With the fake LLM at a fixed latency per call, a 5-agent, 3-round rated session with early stopping
off makes 5 waves of calls (3 rounds, proposals, votes): its critical path is 5 x latency. The
engine's overhead is its wall time over that.
- `parallel`: the default, agents as in-process workers on the Redis bus, SQLite event log.
- `worker_process`: the same session with the agents in a `roundtable worker` process, so their
  LiteLLM client work runs on the second core.
- `sequential`: the same turns one agent after another, as a sequential group chat does.
- Context growth: a 5-round session, mean input tokens per discussion turn in each round.
- `engine_ratio_over_llm_calls`: wall time over the measured LLM-call path (the slowest turn of each
  wave as its agent timed it, LiteLLM's client work included), i.e. the overhead of the engine, bus
  and event log alone.

The fake LLM runs in its own process, so its request handling does not compete for our GIL.

    .venv/bin/python bench/engine.py [--latency 0.3] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot import Runtime, SessionRequest, SessionRunner, Settings  # noqa: E402
from bus import BusAgentPort, PersonaWorker  # noqa: E402
from engine.deliberation import Deliberation  # noqa: E402
from engine.report import SessionReport  # noqa: E402
from engine.turns import TurnReply, TurnRequest  # noqa: E402

TOPIC = "Should a five-person startup adopt a four-day work week?"


class Sequential:
    """An AgentPort that lets one agent speak at a time, like a sequential group chat."""

    def __init__(self, inner: BusAgentPort) -> None:
        self._inner = inner
        self._lock = asyncio.Lock()

    async def ask(self, request: TurnRequest) -> TurnReply:
        async with self._lock:
            return await self._inner.ask(request)


async def one_session(
    runner: SessionRunner, *, rounds: int, sequential: bool = False, external: bool = False
) -> tuple[float, SessionReport]:
    """Run one session; returns its wall time and its report."""
    rt = runner.runtime
    request = SessionRequest(topic=TOPIC, rounds=rounds, voting="rated", early_stop=False, seed=1)
    session_id, config = runner.prepare(request)
    bus = await rt.connect_bus()
    personas = [rt.personas[a] for a in config.team]
    async with AsyncExitStack() as stack:
        if not external:
            worker = PersonaWorker(bus, personas, rt.llm(), workspace=rt.settings.workspace)
            await stack.enter_async_context(worker)
        port = BusAgentPort(bus, session_id, workspace=rt.settings.workspace)
        await stack.enter_async_context(port)
        agents: Any = Sequential(port) if sequential else port
        started = time.perf_counter()
        report = await Deliberation(session_id, config, agents=agents, store=rt.store).run()
        elapsed = time.perf_counter() - started
    return elapsed, report


@contextmanager
def fake_llm_process(latency: float) -> Iterator[str]:
    """The fake LLM in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_llm", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip().removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def worker_processes(settings: Settings, groups: list[str]) -> Iterator[None]:
    """`roundtable worker --agents ...` processes, one per group, on the same private Redis."""
    with ExitStack() as stack:
        for agents in groups:
            stack.enter_context(worker_process(settings, agents))
        yield


@contextmanager
def worker_process(
    settings: Settings, agents: str = "analyst,creative,skeptic,pragmatist,ethicist"
) -> Iterator[None]:
    """`roundtable worker --agents ...` in its own process, on the same private Redis."""
    env = {
        **os.environ,
        "ROUNDTABLE_DATA_DIR": str(settings.data_dir),
        "ROUNDTABLE_MODEL": settings.model or "",
        "ROUNDTABLE_API_BASE": settings.api_base or "",
        "ROUNDTABLE_API_KEY": settings.api_key or "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.app", "worker", "--agents", agents],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if not line.startswith("serving"):
            raise RuntimeError(f"the worker did not start: {line.strip()}")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def main(latency: float, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp, fake_llm_process(latency) as base_url:
        settings = Settings(
            data_dir=Path(tmp), model="openai/fake", api_base=base_url, api_key="sk-fake", turn_timeout_s=60
        )
        runtime = await Runtime.open(settings)
        runner = SessionRunner(runtime)
        try:
            await one_session(runner, rounds=1)  # warm-up: LiteLLM import, connections
            runs = [await one_session(runner, rounds=3) for _ in range(repeat)]
            parallel = [elapsed for elapsed, _ in runs]
            llm_paths = [await _llm_critical_path(runtime, report.session_id) for _, report in runs]
            sequential, _ = await one_session(runner, rounds=3, sequential=True)
            _, five = await one_session(runner, rounds=5)
            events = await runtime.store.load_events(five.session_id)
            with worker_process(settings):
                await one_session(runner, rounds=1, external=True)  # warm-up of the worker process
                external = [(await one_session(runner, rounds=3, external=True))[0] for _ in range(repeat)]
            team = ["analyst", "creative", "skeptic", "pragmatist", "ethicist"]
            with worker_processes(settings, team):
                await one_session(runner, rounds=1, external=True)
                per_agent = [(await one_session(runner, rounds=3, external=True))[0] for _ in range(repeat)]
            bus = runtime.bus_description
        finally:
            await runtime.close()
    critical = 5 * latency
    return {
        "latency_s": latency,
        "critical_path_s": critical,
        "parallel_s": [round(x, 3) for x in parallel],
        "parallel_ratio_median": round(statistics.median(parallel) / critical, 3),
        "parallel_ratio_best": round(min(parallel) / critical, 3),
        "llm_call_path_s": [round(x, 3) for x in llm_paths],
        "engine_ratio_over_llm_calls_median": round(
            statistics.median(p / c for p, c in zip(parallel, llm_paths, strict=True)), 3
        ),
        "worker_process_s": [round(x, 3) for x in external],
        "worker_process_ratio_median": round(statistics.median(external) / critical, 3),
        "process_per_agent_s": [round(x, 3) for x in per_agent],
        "process_per_agent_ratio_median": round(statistics.median(per_agent) / critical, 3),
        "sequential_s": round(sequential, 3),
        "sequential_ratio": round(sequential / critical, 3),
        "input_tokens_per_turn_by_round": _input_tokens_by_round(events),
        "bus": bus,
    }


async def _llm_critical_path(runtime: Runtime, session_id: str) -> float:
    """The sum, over the 5 waves, of the slowest turn as the agent saw it (prompt, LiteLLM, HTTP, model).

    This is the critical path of LLM calls as measured, client overhead included; the engine's own
    overhead (bus, event log, orchestration) is the session's wall time over it.
    """
    slowest: dict[str, float] = {}
    for event in await runtime.store.load_events(session_id):
        if event.kind == "turn_completed":
            slowest[event.step] = max(slowest.get(event.step, 0.0), event.reply.latency_ms / 1000)
    return sum(slowest.values())


def _input_tokens_by_round(events: list[Any]) -> dict[int, float]:
    """Mean prompt tokens per discussion turn, per round, from the stored events' usage."""
    per_round: dict[int, list[int]] = {}
    for event in events:
        if event.kind == "turn_completed" and event.step.startswith("round-"):
            round_no = int(event.step.removeprefix("round-"))
            per_round.setdefault(round_no, []).append(event.reply.usage.prompt_tokens)
    return {r: round(statistics.mean(v), 1) for r, v in sorted(per_round.items())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.latency, args.repeat))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
