"""Messages and slash commands through the real discord.py client, the fake Discord and the real runtime."""

from __future__ import annotations

from collections.abc import Callable

from adapters.discord.render import CHART_FILENAME
from bot import Settings
from bot.chat import ACTION_LABELS, ACTIONS, Replied, Started, button_id
from tests.adapters.discord.harness import (
    ROUTE_EDIT,
    ROUTE_SEND,
    ROUTE_TYPING,
    World,
    assert_within_limits,
    running_bot,
)
from tests.fakes.fake_discord import MESSAGE_CONTENT_INTENT, custom_ids

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_prefix_command_posts_status_edits_it_and_posts_the_result(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    """`!roundtable`: one status message, edited as the session goes, then the result, chart and buttons."""
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        assert fake.identifies[-1]["intents"] & MESSAGE_CONTENT_INTENT
        outcome = await bot.outcome_of(
            fake.send_message(
                world.channel["id"], world.alice, "!roundtable Should we move to Postgres? --rounds 1"
            )
        )
        assert isinstance(outcome, Started)
        report = await bot.finished(outcome)

    sends = [r for r in fake.calls(ROUTE_SEND) if r.params["channel_id"] == world.channel["id"]]
    status, result = sends[0], sends[1]
    assert "RoundTable" in status.body["embeds"][0]["title"]
    edits = fake.calls(ROUTE_EDIT)
    assert len(edits) >= 2
    assert {e.params["message_id"] for e in edits} == {status.response["id"]}
    assert "Finished" in edits[-1].body["embeds"][0]["title"]
    assert fake.max_concurrent_edits == 1
    assert fake.calls(ROUTE_TYPING), "typing is shown while agents think"

    # the result: a reply to the command, the chart as an attachment the embed shows, three buttons
    assert result.body["message_reference"]["message_id"] == status.body["message_reference"]["message_id"]
    [upload] = result.files
    assert upload.filename == CHART_FILENAME
    assert upload.data.startswith(PNG_SIGNATURE)
    embed = result.body["embeds"][0]
    assert embed["image"]["url"] == f"attachment://{CHART_FILENAME}"
    assert result.body["attachments"][0]["filename"] == CHART_FILENAME
    assert report.winner is not None
    assert report.winner.title in embed["title"]
    assert "Should we move to Postgres?" in embed["description"]
    assert f"session {report.session_id}" in embed["footer"]["text"]
    names = [f["name"] for f in embed["fields"]]
    assert names[0].startswith("Proposal by")
    assert any(n.startswith("Votes · ") for n in names)
    assert custom_ids(result.body) == [button_id(action, report.session_id) for action in ACTIONS]
    labels = [b["label"] for b in result.body["components"][0]["components"]]
    assert labels == [ACTION_LABELS[action] for action in ACTIONS]
    assert assert_within_limits(fake) >= 4


async def test_mention_with_a_dilemma_starts_a_session_on_the_text_without_the_mention(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(
                world.channel["id"],
                world.alice,
                f"<@{world.bot['id']}> pros and cons of a four-day week?",
                mentions=(world.bot,),
            )
        )
        report = await bot.finished(outcome)
    assert report.topic == "pros and cons of a four-day week?"
    assert assert_within_limits(fake) >= 3


async def test_a_dilemma_in_a_trigger_channel_starts_a_session_without_a_mention(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(trigger_channels=[world.other_channel["id"]]), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.other_channel["id"], world.alice, "pros and cons of a standing desk?")
        )
        report = await bot.finished(outcome)
    assert report.topic == "pros and cons of a standing desk?"


async def test_a_message_without_command_or_mention_is_ignored(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "pros and cons of lunch at noon?")
        )
    assert not isinstance(outcome, Started | Replied)
    assert not fake.calls(ROUTE_SEND)


async def test_user_not_on_the_allowlist_gets_a_one_line_refusal(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(enabled_users=[world.alice["id"]]), fake) as bot:
        trigger = None

        async def post() -> None:
            nonlocal trigger
            trigger = await fake.send_message(world.channel["id"], world.bob, "!roundtable Tabs or spaces?")

        outcome = await bot.outcome_of(post())
        reply = await fake.wait_for(lambda r: r.route == ROUTE_SEND)
    assert isinstance(outcome, Replied)
    assert trigger is not None
    assert reply.body["content"] == outcome.text
    assert "not on this RoundTable's list of enabled users" in reply.body["content"]
    assert "\n" not in reply.body["content"]
    assert str(reply.body["message_reference"]["message_id"]) == trigger["id"]
    assert len(fake.calls(ROUTE_SEND)) == 1, "no session was started"


async def test_an_admin_role_passes_the_allowlist(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    settings = chat_settings(enabled_users=[world.alice["id"]], admin_roles=["RoundTable Admin"])
    async with running_bot(settings, fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.carol, "!roundtable Tabs or spaces?")
        )
        await bot.finished(outcome)


async def test_fourth_session_by_one_user_within_the_window_is_rate_limited(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(sessions_per_user=3), fake) as bot:
        for n in range(3):
            outcome = await bot.outcome_of(
                fake.send_message(world.channel["id"], world.alice, f"!roundtable Option {n}: A or B?")
            )
            await bot.finished(outcome)
        mark = len(fake.requests)
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable One more: A or B?")
        )
        reply = await fake.wait_for(lambda r: r.route == ROUTE_SEND, since=mark)
        other = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.bob, "!roundtable Bob's turn?")
        )
        await bot.finished(other)
    assert isinstance(outcome, Replied)
    assert "try again in" in outcome.text
    assert reply.body["content"] == outcome.text


async def test_invalid_option_gets_the_one_line_reason_with_the_choices(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable Tabs or spaces? --voting rnaked")
        )
        reply = await fake.wait_for(lambda r: r.route == ROUTE_SEND)
    assert isinstance(outcome, Replied)
    assert reply.body["content"] == (
        "unknown voting rule 'rnaked'; choose one of majority, rated, ranked, unanimity, approval, condorcet"
    )


async def test_bare_command_gets_the_usage_in_a_code_block(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(fake.send_message(world.channel["id"], world.alice, "!roundtable"))
        reply = await fake.wait_for(lambda r: r.route == ROUTE_SEND)
    assert isinstance(outcome, Replied)
    content = reply.body["content"]
    assert content.startswith("```\nusage: !roundtable <topic>")
    assert content.endswith("```")
    assert outcome.text.strip() in content
