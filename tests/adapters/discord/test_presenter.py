"""The presenter's own guarantees: edits never overlap, and failures reach the channel as one line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot import Settings
from bot.chat import Started, button_id
from bot.views import AgentProgress, AgentRef, ProgressView
from tests.adapters.discord.harness import (
    ROUTE_CALLBACK,
    ROUTE_EDIT,
    ROUTE_FOLLOWUP,
    ROUTE_SEND,
    ROUTE_TYPING,
    World,
    running_bot,
)
from tests.fakes.fake_discord import EPHEMERAL

ANALYST = AgentRef(id="analyst", name="Analyst", emoji="📊")


def view(title: str, *, status: str = "typing", finished: bool = False) -> ProgressView:
    return ProgressView(
        session_id="ab12cd34ef56",
        title=title,
        phase="discussion",
        step="round-1",
        round=1,
        rounds_planned=1,
        agents=[AgentProgress(agent=ANALYST, status=status)],
        notes=[],
        elapsed_s=1.0,
        finished=finished,
    )


async def test_concurrent_progress_calls_are_serialized_and_the_newest_view_wins(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    fake.edit_delay_s = 0.05  # a slow edit: a second one sent meanwhile would overlap it
    async with running_bot(chat_settings(), fake) as bot:
        channel = bot.client.get_partial_messageable(
            int(world.channel["id"]), guild_id=int(world.guild["id"])
        )
        presenter = bot.client.presenter(channel, guild_id=int(world.guild["id"]), reply_to=None, topic="t")
        await presenter.started("ab12cd34ef56", view("Starting"))
        await fake.wait_for(lambda r: r.route == ROUTE_TYPING)  # agents are thinking
        await asyncio.gather(*(presenter.progress(view(f"Discussion round {n}")) for n in range(1, 6)))
        await presenter.progress(view("Finished", status="spoken", finished=True))
        await presenter.close()
    edits = fake.calls(ROUTE_EDIT)
    assert fake.max_concurrent_edits == 1
    titles = [e.body["embeds"][0]["title"] for e in edits]
    assert titles[:2] == ["⏳ RoundTable · Discussion round 1", "⏳ RoundTable · Discussion round 5"]
    assert titles[-1] == "✅ RoundTable · Finished"
    assert len(edits) == 3, "the views that waited behind the first edit collapsed into the newest"


async def test_a_result_discord_refuses_becomes_a_one_line_notice_naming_the_permissions(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    fake.failures[ROUTE_SEND] = [None, 403]  # the status message posts; the result with its chart is refused
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable Tea?")
        )
        await bot.finished(outcome)
    assert isinstance(outcome, Started)
    sends = fake.calls(ROUTE_SEND)
    assert [s.status for s in sends] == [200, 403, 200]
    notice = sends[2].body["content"]
    assert notice.startswith(f"⚠️ RoundTable session `{outcome.session_id}`: the session finished")
    assert "Discord refused to post here (Missing Permissions); give the bot View Channel" in notice
    assert f"`roundtable show {outcome.session_id}` has it" in notice
    assert "\n" not in notice


async def test_a_button_of_an_unknown_session_answers_privately_in_one_line(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    custom_id = button_id("proposals", "000000000000")
    old = fake.add_bot_message(
        world.channel["id"],
        {
            "components": [
                {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id}]}
            ]
        },
    )
    async with running_bot(chat_settings(), fake):
        await fake.click(old["id"], custom_id, world.bob)
        reply = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP)
    [callback] = fake.calls(ROUTE_CALLBACK)
    assert callback.body == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert reply.body["content"] == "⚠️ no session '000000000000'; `roundtable sessions` lists them"
    assert reply.body["flags"] & EPHEMERAL
    assert not reply.body["embeds"]
