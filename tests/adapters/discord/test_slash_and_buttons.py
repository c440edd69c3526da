"""The slash command, the persistent buttons (also after a restart), resuming, and threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot import Settings
from bot.chat import Replied, Started, button_id
from engine.rules import VOTING_RULES
from personas import TEAMS
from tests.adapters.discord.harness import (
    ROUTE_CALLBACK,
    ROUTE_EDIT,
    ROUTE_EDIT_ORIGINAL,
    ROUTE_FOLLOWUP,
    ROUTE_SEND,
    ROUTE_THREAD_FROM_MESSAGE,
    World,
    assert_within_limits,
    running_bot,
)
from tests.fakes.fake_discord import EPHEMERAL, FakeDiscord, Recorded, custom_ids
from tests.fakes.fake_llm import FakeLLM


def result_message(fake: FakeDiscord, session_id: str) -> Recorded:
    """The recorded result message of a session: the one carrying its buttons."""
    return next(
        r for r in fake.calls(ROUTE_SEND) if button_id("discussion", session_id) in custom_ids(r.body or {})
    )


async def test_slash_command_is_registered_with_ranges_and_choices(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    async with running_bot(chat_settings(), world.fake):
        pass
    [command] = world.fake.commands
    options = {o["name"]: o for o in command["options"]}
    assert command["name"] == "roundtable"
    assert options["topic"]["required"]
    assert options["topic"]["type"] == 3
    assert options["topic"]["max_length"] == 4000
    assert (options["rounds"]["type"], options["rounds"]["min_value"], options["rounds"]["max_value"]) == (
        4,
        1,
        5,
    )
    assert [c["value"] for c in options["voting"]["choices"]] == list(VOTING_RULES)
    assert [c["value"] for c in options["team"]["choices"]] == list(TEAMS)


async def test_slash_command_defers_privately_and_runs_with_its_options(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        options = {
            "topic": "Tea or coffee for the office?",
            "rounds": 1,
            "voting": "ranked",
            "team": "compact",
        }
        outcome = await bot.outcome_of(fake.slash(world.channel["id"], world.alice, "roundtable", options))
        report = await bot.finished(outcome)
    [callback] = fake.calls(ROUTE_CALLBACK)
    assert callback.body["type"] == 5  # thinking, private
    assert callback.body["data"]["flags"] & EPHEMERAL
    [followup] = fake.calls(ROUTE_FOLLOWUP)
    assert isinstance(outcome, Started)
    assert followup.body["content"].startswith(f"Started RoundTable session `{outcome.session_id}`")
    assert followup.body["flags"] & EPHEMERAL
    assert (report.topic, report.voting_rule, report.rounds_planned) == (options["topic"], "ranked", 1)
    assert report.team == list(TEAMS["compact"])
    result = result_message(fake, report.session_id)
    assert result.params["channel_id"] == world.channel["id"]
    assert assert_within_limits(fake) >= 4


async def test_slash_command_refusal_is_a_private_one_line_reply(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(enabled_users=["nobody"]), fake) as bot:
        outcome = await bot.outcome_of(
            fake.slash(world.channel["id"], world.bob, "roundtable", {"topic": "Tea or coffee?"})
        )
    assert isinstance(outcome, Replied)
    [followup] = fake.calls(ROUTE_FOLLOWUP)
    assert followup.body["content"] == outcome.text
    assert fake.messages[followup.response["id"]]["flags"] & EPHEMERAL
    assert not fake.calls(ROUTE_SEND)


async def test_buttons_work_on_a_new_client_after_a_restart(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    """A result posted by one client answers its buttons on the next (same database, new process state)."""
    fake = world.fake
    settings = chat_settings(rounds=2)
    async with running_bot(settings, fake) as first:
        outcome = await first.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable Rust or Go? --rounds 2")
        )
        report = await first.finished(outcome)
    session_id = report.session_id
    result = result_message(fake, session_id)

    async with running_bot(settings, fake) as second:
        assert second.client is not first.client
        mark = len(fake.requests)
        await fake.click(result.response["id"], button_id("discussion", session_id), world.bob)
        page = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP, since=mark)
        callback = next(r for r in fake.requests[mark:] if r.route == ROUTE_CALLBACK)
        assert callback.body == {"type": 5, "data": {"flags": EPHEMERAL}}
        embed = page.body["embeds"][0]
        assert embed["title"].startswith("💬 Discussion (1/")
        first_turn = report.transcript[0].content.strip()
        assert first_turn.split()[0] in embed["description"]
        assert page.body["flags"] & EPHEMERAL

        mark = len(fake.requests)
        await fake.click(result.response["id"], button_id("stats", session_id), world.bob)
        stats = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP, since=mark)
        names = [f["name"] for f in stats.body["embeds"][0]["fields"]]
        assert len(names) == len(report.team)
        assert stats.body["embeds"][0]["title"] == "📊 Statistics"
    assert assert_within_limits(fake) >= 6


async def test_page_buttons_turn_the_private_page_in_place(
    world: World, chat_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """Long turns make several discussion pages; "Next ▶" edits the private message to the next page."""
    long_turn = " ".join(f"Sentence {n} weighs one more consideration about the choice." for n in range(20))
    fake_llm.set(
        responder=lambda body: (
            f'{{"message": "{long_turn}", "position": "undecided", "ready": false}}'
            if (body.get("response_format") or {}).get("json_schema", {}).get("name") == "discussion_turn"
            else None
        )
    )
    fake = world.fake
    async with running_bot(chat_settings(rounds=3, team="full"), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(
                world.channel["id"], world.alice, "!roundtable Monorepo or many repos? --rounds 3"
            )
        )
        report = await bot.finished(outcome)
        session_id = report.session_id
        result = result_message(fake, session_id)
        mark = len(fake.requests)
        await fake.click(result.response["id"], button_id("discussion", session_id), world.bob)
        first_page = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP, since=mark)
        bodies = [first_page.body["embeds"][0]["description"]]
        total = int(first_page.body["embeds"][0]["title"].split("/")[1].rstrip(")"))
        assert total >= 3
        message_id = first_page.response["id"]
        for page in range(1, total):
            assert custom_ids(fake.messages[message_id])[-1] == button_id("discussion", session_id, page)
            mark = len(fake.requests)
            await fake.click(message_id, button_id("discussion", session_id, page), world.bob)
            edit = await fake.wait_for(lambda r: r.route == ROUTE_EDIT_ORIGINAL, since=mark)
            callback = next(r for r in fake.requests[mark:] if r.route == ROUTE_CALLBACK)
            assert callback.body == {"type": 6}  # acknowledged as an update of the same message
            assert edit.params["message_id"] == "@original"
            bodies.append(edit.body["embeds"][0]["description"])
        assert custom_ids(fake.messages[message_id]) == [button_id("discussion", session_id, total - 2)]
    text = "\n".join(bodies)
    assert text.count(long_turn) == len(report.transcript), "every turn is on a page, whole"
    assert assert_within_limits(fake) >= total + 3


async def test_a_session_cut_by_a_restart_resumes_and_posts_where_it_came_from(
    world: World, chat_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake = world.fake
    settings = chat_settings(rounds=2)
    fake_llm.set(latency_s=0.2)
    async with running_bot(settings, fake) as first:
        trigger: dict[str, object] = {}

        async def post() -> None:
            trigger.update(
                await fake.send_message(
                    world.other_channel["id"], world.alice, "!roundtable Vim or Emacs? --rounds 2"
                )
            )

        outcome = await first.outcome_of(post())
        assert isinstance(outcome, Started)
        await fake.wait_for(lambda r: r.route == ROUTE_EDIT)  # it is under way
    assert outcome.task.cancelled()
    posted = [custom_ids(r.message_payload) for r in fake.sent_messages()]
    assert not any(button_id("discussion", outcome.session_id) in ids for ids in posted)

    fake_llm.set(latency_s=0.0)
    async with running_bot(settings, fake) as second:
        task = second.client.sessions[outcome.session_id]
        report = await asyncio.wait_for(task, timeout=30)
    assert report is not None
    assert report.status == "completed"
    result = result_message(fake, outcome.session_id)
    assert result.params["channel_id"] == world.other_channel["id"]
    assert str(result.body["message_reference"]["message_id"]) == trigger["id"]
    assert assert_within_limits(fake) >= 4


async def test_thread_per_session_opens_from_the_command_and_posts_inside(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(discord_thread=True), fake) as bot:
        trigger: dict[str, object] = {}

        async def post() -> None:
            trigger.update(
                await fake.send_message(world.channel["id"], world.alice, "!roundtable Cats or dogs?")
            )

        report = await bot.finished(await bot.outcome_of(post()))
    [thread] = fake.calls(ROUTE_THREAD_FROM_MESSAGE)
    assert thread.params["message_id"] == trigger["id"]
    assert thread.body["name"] == "!roundtable Cats or dogs?"
    thread_id = thread.response["id"]
    status = fake.calls(ROUTE_SEND)[0]
    assert status.params["channel_id"] == thread_id
    assert result_message(fake, report.session_id).params["channel_id"] == thread_id
    assert {e.params["channel_id"] for e in fake.calls(ROUTE_EDIT)} == {thread_id}


async def test_thread_per_session_from_a_slash_command_opens_on_the_status_message(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    fake = world.fake
    async with running_bot(chat_settings(discord_thread=True), fake) as bot:
        outcome = await bot.outcome_of(
            fake.slash(world.channel["id"], world.alice, "roundtable", {"topic": "Cats or dogs?"})
        )
        report = await bot.finished(outcome)
    status = fake.calls(ROUTE_SEND)[0]
    assert status.params["channel_id"] == world.channel["id"]
    [thread] = fake.calls(ROUTE_THREAD_FROM_MESSAGE)
    assert thread.params["message_id"] == status.response["id"]
    assert thread.body["name"] == "Cats or dogs?"
    assert result_message(fake, report.session_id).params["channel_id"] == thread.response["id"]


async def test_rate_limited_edits_are_retried_by_discord_py(
    world: World, chat_settings: Callable[..., Settings]
) -> None:
    """A 429 on an edit is waited out and retried; the session still ends with its result."""
    fake = world.fake
    fake.failures[ROUTE_EDIT] = [429]
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable Red or blue?")
        )
        report = await bot.finished(outcome)
    statuses = [r.status for r in fake.calls(ROUTE_EDIT)]
    assert statuses[0] == 429
    assert statuses[1] == 200
    assert result_message(fake, report.session_id)
