"""Golden payloads: what the adapter sends Discord for one fixed session (tests/adapters/golden/discord).

The session is fixed by its seed, topic, team and the fake LLM's deterministic replies; ids, the
duration and other volatile values are replaced by placeholders. After an intended change of the
layout, rewrite the files with `ROUNDTABLE_UPDATE_GOLDEN=1 pytest tests/adapters/discord/test_golden.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot import SessionRequest, Settings
from bot.chat import ChatOrigin, Started, button_id
from tests.adapters.discord.harness import (
    ROUTE_EDIT,
    ROUTE_FOLLOWUP,
    ROUTE_SEND,
    World,
    assert_within_limits,
    running_bot,
)
from tests.fakes.fake_discord import custom_ids

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "discord"
UPDATE = os.environ.get("ROUNDTABLE_UPDATE_GOLDEN") == "1"

_SNOWFLAKE = re.compile(r"^\d{15,21}$")
_DURATION = re.compile(r"\b\d+(\.\d+)?s\b")


def normalise(value: Any, session_id: str) -> Any:
    """The payload with the session id, snowflakes, nonces and durations replaced by placeholders."""
    if isinstance(value, dict):
        return {
            key: "<nonce>" if key == "nonce" else normalise(item, session_id)
            for key, item in sorted(value.items())
        }
    if isinstance(value, list):
        return [normalise(item, session_id) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and _SNOWFLAKE.match(str(value)):
        return "<snowflake>"
    if isinstance(value, str):
        if _SNOWFLAKE.match(value):
            return "<snowflake>"
        return _DURATION.sub("<duration>", value.replace(session_id, "<session>"))
    return value


def check_golden(name: str, payload: Any) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    text = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{path} did not exist and was written; review and commit it")
        return
    assert json.loads(path.read_text(encoding="utf-8")) == payload, (
        f"{name}: the payload differs from {path}; if the change is intended, rerun with "
        "ROUNDTABLE_UPDATE_GOLDEN=1 and review the diff"
    )


async def test_payloads_of_a_fixed_session_match_the_golden_files(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        request = SessionRequest(
            topic="Should our team of five adopt a four-day work week?",
            rounds=1,
            voting="ranked",
            team="compact",
            seed=20240611,
        )
        origin = ChatOrigin(
            platform="discord",
            channel_id=world.channel["id"],
            user_id=world.alice["id"],
            guild_id=world.guild["id"],
        )
        channel = bot.client.get_partial_messageable(
            int(world.channel["id"]), guild_id=int(world.guild["id"])
        )
        presenter = bot.client.presenter(
            channel, guild_id=int(world.guild["id"]), reply_to=None, topic=request.topic
        )
        outcome = await bot.service.start(request, origin, presenter)
        assert isinstance(outcome, Started)
        report = await bot.finished(outcome)
        session_id = report.session_id
        result = next(
            r for r in fake.calls(ROUTE_SEND) if button_id("discussion", session_id) in custom_ids(r.body)
        )
        pages = {}
        for action in ("discussion", "proposals", "stats"):
            mark = len(fake.requests)
            await fake.click(result.response["id"], button_id(action, session_id), world.bob)
            pages[action] = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP, since=mark)

    assert_within_limits(fake)
    uploads = [
        {"name": f.name, "filename": f.filename, "png": f.data.startswith(b"\x89PNG")} for f in result.files
    ]
    check_golden("result_message", normalise({"payload": result.body, "files": uploads}, session_id))
    check_golden("progress_final", normalise(fake.calls(ROUTE_EDIT)[-1].body, session_id))
    for action, record in pages.items():
        check_golden(f"{action}_page", normalise(record.body, session_id))
