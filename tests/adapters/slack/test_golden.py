"""Golden Block Kit payloads of one fixed session: the result message and a page behind each button.

The session runs with a fixed seed against the deterministic fake LLM, posts through the adapter's
`SlackPresenter` into the fake Web API, and the buttons are clicked over HTTP. Session ids and
durations are normalised. Run with ROUNDTABLE_UPDATE_GOLDEN=1 to rewrite the files after an intended
change, and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from adapters.slack import SlackPresenter
from bot import SessionRequest
from bot.chat import ACTIONS, ChatOrigin, Started, button_id
from tests.adapters.slack.harness import SlackBot, is_result

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "slack"
UPDATE = os.environ.get("ROUNDTABLE_UPDATE_GOLDEN") == "1"

#: Values that differ from run to run, and what they become.
_VOLATILE = (
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "<duration>"),  # "2.8s", "3s elapsed"
    (re.compile(r"\b\d+ ms a turn\b"), "<latency> ms a turn"),
)


def normalise(payload: Any, session_id: str) -> Any:
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True).replace(session_id, "SESSION")
    for pattern, stand_in in _VOLATILE:
        text = pattern.sub(stand_in, text)
    return json.loads(text)


def message(args: dict[str, Any]) -> dict[str, Any]:
    """The part of a recorded call that is the message (no channel, ts or token)."""
    keep = ("text", "blocks", "response_type", "replace_original", "thread_ts")
    return {k: args[k] for k in keep if k in args}


def check(name: str, payload: Any) -> None:
    path = GOLDEN / f"{name}.json"
    rendered = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
        if not UPDATE:
            raise AssertionError(f"{path} did not exist and was written; review it and commit it")
    assert json.loads(path.read_text(encoding="utf-8")) == payload, (
        f"{name} differs from {path}; if the change is intended, rerun with ROUNDTABLE_UPDATE_GOLDEN=1"
    )


async def test_the_payloads_of_a_fixed_session_match_the_golden_files(bot: SlackBot) -> None:
    origin = ChatOrigin(platform="slack", channel_id="CGOLD", user_id="UGOLD", message_id="1600000000.000100")
    request = SessionRequest(
        topic="Should our team move to a four-day work week?",
        rounds=1,
        voting="ranked",
        team="compact",
        seed=7,
    )
    started = await bot.service.start(request, origin, SlackPresenter(bot.app.client, origin))
    assert isinstance(started, Started)
    assert await started.task is not None
    session_id = started.session_id
    await bot.wait_result("CGOLD")

    results = [message(c.args) for c in bot.fake.calls_to("chat.postMessage") if is_result(c)]
    final_status = message(bot.fake.calls_to("chat.update")[-1].args)
    for action in ACTIONS:
        assert (await bot.click(button_id(action, session_id), channel="CGOLD"))[0] == 200
    pages = await bot.responses(len(ACTIONS))
    by_title = {p.blocks[0]["text"]["text"].split(" ")[1]: message(p.args) for p in pages}

    check("result", normalise(results, session_id))
    check("status_final", normalise(final_status, session_id))
    check("discussion", normalise(by_title["Discussion"], session_id))
    check("proposals", normalise(by_title["Proposals"], session_id))
    check("stats", normalise(by_title["Statistics"], session_id))
