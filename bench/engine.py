"""Engine benchmark: overhead over the critical path, a sequential baseline, context growth.

With the fake LLM at a fixed latency per call, a 5-agent, 3-round rated session with early stopping
off makes 5 waves of calls (3 rounds, proposals, votes): its critical path is 5 x latency. The engine's
overhead is its wall time over that. The sequential baseline runs the same turns one agent after
another, as a sequential group chat does. Context growth runs 5 rounds and reports the mean input
tokens per discussion turn in each round.

    .venv/bin/python bench/engine.py [--latency 0.3] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import Runtime, SessionRequest, SessionRunner, Settings
from bus.agent_port import BusAgentPort
from bus.worker import PersonaWorker
from engine.deliberation import Deliberation
from engine.turns import TurnReply, TurnRequest
from tests.fakes.fake_llm import FakeLLM

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
    runner: SessionRunner, *, rounds: int, sequential: bool
) -> tuple[float, dict[str, Any]]:
    rt = runner.runtime
    session_id, config = runner.prepare(
        SessionRequest(topic=TOPIC, rounds=rounds, voting="rated", early_stop=False, seed=1)
    )
    bus = await rt.connect_bus()
    personas = [rt.personas[a] for a in config.team]
    async with (
        PersonaWorker(bus, personas, rt.llm(), workspace=rt.settings.workspace),
        BusAgentPort(bus, session_id, workspace=rt.settings.workspace) as port,
    ):
        agents: Any = Sequential(port) if sequential else port
        started = time.perf_counter()
        doc = await Deliberation(session_id, config, agents=agents, store=rt.store).run()
        return time.perf_counter() - started, doc


async def main(latency: float, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp, FakeLLM(latency_s=latency) as fake:
        settings = Settings(
            data_dir=Path(tmp),
            model="openai/fake",
            api_base=fake.base_url,
            api_key="sk-fake",
            turn_timeout_s=60,
        )
        runtime = await Runtime.open(settings)
        runner = SessionRunner(runtime)
        try:
            await one_session(runner, rounds=1, sequential=False)  # warm-up: LiteLLM import, connections
            critical = 5 * latency
            parallel = [(await one_session(runner, rounds=3, sequential=False))[0] for _ in range(repeat)]
            sequential, _ = await one_session(runner, rounds=3, sequential=True)
            _, five = await one_session(runner, rounds=5, sequential=False)
            events = await runtime.store.load_events(five["session_id"])
        finally:
            await runtime.close()
    log = five["transcript"]
    tokens_by_round = _input_tokens_by_round(events)
    best = min(parallel)
    return {
        "latency_s": latency,
        "critical_path_s": critical,
        "parallel_s": [round(x, 3) for x in parallel],
        "parallel_median_s": round(statistics.median(parallel), 3),
        "overhead_ratio_best": round(best / critical, 3),
        "overhead_ratio_median": round(statistics.median(parallel) / critical, 3),
        "sequential_s": round(sequential, 3),
        "sequential_ratio": round(sequential / critical, 3),
        "input_tokens_per_turn_by_round": tokens_by_round,
        "turns_in_5_round_session": len(log),
        "bus": runtime.bus_description,
    }


def _input_tokens_by_round(events: list[Any]) -> dict[int, float]:
    """Mean prompt tokens per discussion turn, per round, from the stored events' usage."""
    per_round: dict[int, list[int]] = {}
    for event in events:
        if event.kind == "turn_completed" and event.step.startswith("round-"):
            per_round.setdefault(int(event.step.removeprefix("round-")), []).append(
                event.reply.usage.prompt_tokens
            )
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
