"""The Slack app end to end: signed events and clicks over HTTP into the real bolt app; the fake Web API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from adapters.slack.blocks import MAX_FALLBACK_TEXT
from bot import Settings
from bot.chat import ACTION_LABELS, ACTIONS, button_id
from bot.chat.access import NOT_ENABLED
from tests.adapters.slack.harness import SlackBot, StartBot, is_result
from tests.fakes.fake_llm import FakeLLM
from tests.fakes.fake_slack import BOT_USER_ID, Call, FakeSlack, block_kit_violations, signature
from tests.helpers import schema_of

PNG = b"\x89PNG\r\n\x1a\n"


def section_texts(call: Call) -> list[str]:
    return [b["text"]["text"] for b in call.blocks if b["type"] == "section"]


def buttons(call: Call) -> list[dict[str, Any]]:
    return [e for b in call.blocks if b["type"] == "actions" for e in b["elements"]]


def replies(fake: FakeSlack, channel: str = "C1") -> list[Call]:
    """Posts that are neither a status, nor a result: one-line answers."""
    return [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.args.get("channel") == channel and not c.text.startswith("RoundTable")
    ]


def statuses(fake: FakeSlack, channel: str = "C1") -> list[Call]:
    return [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.args.get("channel") == channel and c.text == "RoundTable: Starting"
    ]


def session_of(result: Call) -> str:
    return str(buttons(result)[0]["action_id"]).split(":")[2]


async def test_a_command_posts_a_status_edits_it_then_posts_the_result_and_the_chart(bot: SlackBot) -> None:
    await bot.message("!roundtable Tabs or spaces? --voting ranked")
    calls = await bot.wait_result()
    posts = [c for c in calls if c.method in ("chat.postMessage", "chat.update")]

    status, *edits = [c for c in posts if c.text.startswith("RoundTable:")]
    assert status.method == "chat.postMessage"
    assert status.args["channel"] == "C1"
    assert "thread_ts" not in status.args  # a top-level message posts into the channel
    status_ts = "1700000000.000001"  # the fake's first ts
    assert edits
    assert all(e.method == "chat.update" and e.args["ts"] == status_ts for e in edits)
    assert edits[-1].text == "RoundTable: Finished"
    result = next(c for c in posts if is_result(c))
    assert posts.index(result) > posts.index(edits[-1])  # edits are over before the result shows
    assert [b["text"]["text"] for b in buttons(result)] == [ACTION_LABELS[a] for a in ACTIONS]
    session_id = session_of(result)
    assert [b["action_id"] for b in buttons(result)] == [button_id(a, session_id) for a in ACTIONS]
    assert [b["value"] for b in buttons(result)] == [button_id(a, session_id) for a in ACTIONS]
    assert any("*Votes* (ranked)" in text for text in section_texts(result))


async def test_the_vote_chart_is_uploaded_with_files_upload_v2_into_the_channel(bot: SlackBot) -> None:
    await bot.message("!roundtable Tabs or spaces?", channel="C7")
    calls = await bot.wait_result("C7")
    session_id = session_of(next(c for c in calls if is_result(c)))
    chart = (await bot.service.result(session_id)).chart_png
    assert chart is not None
    assert chart.startswith(PNG)

    [get_url] = bot.fake.calls_to("files.getUploadURLExternal")
    assert get_url.args["filename"] == f"roundtable-{session_id}-votes.png"
    assert int(get_url.args["length"]) == len(chart)
    [upload] = bot.fake.calls_to("upload")
    assert upload.raw == chart  # the PNG's bytes arrived at the upload URL, whole
    [complete] = bot.fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == "C7"
    assert complete.args["files"] == [{"id": upload.args["file_id"], "title": "Vote distribution"}]


async def test_a_session_asked_in_a_thread_answers_in_that_thread(bot: SlackBot) -> None:
    await bot.message("!roundtable Tabs or spaces?", channel="C8", thread_ts="1600000000.000042")
    await bot.wait_result("C8")
    for call in bot.fake.calls_to("chat.postMessage"):
        assert call.args.get("thread_ts") == "1600000000.000042"
    assert bot.fake.calls_to("files.completeUploadExternal")[0].args["thread_ts"] == "1600000000.000042"


async def test_a_mention_with_a_dilemma_starts_one_session_on_the_text_without_the_mention(
    bot: SlackBot,
) -> None:
    await bot.mention("What are the pros and cons of a four-day week for our team?")
    calls = await bot.wait_result()
    # The message event that carries the mention neither starts a second session nor is refused.
    assert len(statuses(bot.fake)) == 1
    assert replies(bot.fake) == []
    result = next(c for c in calls if is_result(c))
    question = next(t for t in section_texts(result) if t.startswith("*Question*"))
    assert question == "*Question*\nWhat are the pros and cons of a four-day week for our team?"
    assert f"<@{BOT_USER_ID}>" not in json.dumps(result.args)


async def test_a_mention_in_a_trigger_channel_starts_one_session_not_two(
    start_bot: StartBot, slack_settings: Callable[..., Settings]
) -> None:
    """There the message event alone would start a session too; only app_mention answers a mention."""
    bot = await start_bot(slack_settings(trigger_channels=["CTRIG"]))
    await bot.mention("Postgres or MySQL for the new billing service?", channel="CTRIG")
    await bot.wait_result("CTRIG")
    assert len(statuses(bot.fake, "CTRIG")) == 1
    assert replies(bot.fake, "CTRIG") == []


async def test_a_mention_without_a_dilemma_answers_with_a_hint_in_the_thread(bot: SlackBot) -> None:
    ts = await bot.mention("hello there")
    await bot.wait(lambda calls: bool(replies(bot.fake)))
    [reply] = replies(bot.fake)
    assert "ask me a dilemma" in reply.text
    assert reply.args["thread_ts"] == ts
    assert statuses(bot.fake) == []


async def test_a_dilemma_in_a_trigger_channel_starts_a_session_without_a_mention(
    start_bot: StartBot, slack_settings: Callable[..., Settings]
) -> None:
    bot = await start_bot(slack_settings(trigger_channels=["CTRIG"]))
    await bot.message("Postgres or MySQL for the new billing service?", channel="COTHER")
    await bot.message("Postgres or MySQL for the new billing service?", channel="CTRIG")
    await bot.wait_result("CTRIG")
    assert len(statuses(bot.fake, "CTRIG")) == 1
    assert [c for c in bot.fake.calls if c.args.get("channel") == "COTHER"] == []


async def test_a_user_not_on_the_allowlist_is_refused_in_one_line(
    start_bot: StartBot, slack_settings: Callable[..., Settings]
) -> None:
    bot = await start_bot(slack_settings(enabled_users=["UALLOWED"]))
    ts = await bot.message("!roundtable Tabs or spaces?", user="UOTHER")
    await bot.wait(lambda calls: bool(replies(bot.fake)))
    [reply] = replies(bot.fake)
    assert reply.text == NOT_ENABLED
    assert reply.args["thread_ts"] == ts
    assert statuses(bot.fake) == []


async def test_the_fourth_session_in_the_window_is_refused_by_the_rate_limit(
    start_bot: StartBot, slack_settings: Callable[..., Settings]
) -> None:
    bot = await start_bot(slack_settings(sessions_per_user=3))
    for channel in ("C1", "C2", "C3"):
        await bot.message(f"!roundtable Tabs or spaces, take {channel}?", channel=channel, user="UBUSY")
    await bot.wait(lambda calls: sum(c.text == "RoundTable: Starting" for c in calls) == 3)
    await bot.message("!roundtable One more?", channel="C4", user="UBUSY")
    await bot.wait(lambda calls: bool(replies(bot.fake, "C4")))
    [refusal] = replies(bot.fake, "C4")
    assert refusal.text.startswith("you have started 3 sessions in the last hour; try again in")
    assert statuses(bot.fake, "C4") == []
    for channel in ("C1", "C2", "C3"):
        await bot.wait_result(channel, uploads=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!roundtable", "usage: !roundtable <topic>"),
        ("!roundtable Tabs? --rounds 9", "--rounds 9 is out of range; choose 1-5"),
        ("!roundtable Tabs? --voting nope", "unknown voting rule 'nope'"),
    ],
)
async def test_usage_and_invalid_options_are_answered_in_the_thread(
    bot: SlackBot, text: str, expected: str
) -> None:
    ts = await bot.message(text)
    await bot.wait(lambda calls: bool(replies(bot.fake)))
    [reply] = replies(bot.fake)
    assert expected in section_texts(reply)[0].replace("&lt;", "<").replace("&gt;", ">")
    assert reply.args["thread_ts"] == ts
    assert statuses(bot.fake) == []


async def test_a_request_with_a_bad_signature_is_refused_by_bolt(bot: SlackBot) -> None:
    body = json.dumps(
        {"type": "event_callback", "event": {"type": "message", "text": "!roundtable x"}}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": "1700000000",
        "X-Slack-Signature": signature("not-the-secret", "1700000000", body),
    }
    async with bot.http.post(bot.url, data=body, headers=headers) as response:
        assert response.status == 401
    assert bot.fake.calls == []


async def test_slack_s_url_verification_handshake_is_answered(bot: SlackBot) -> None:
    """What Slack sends when the Request URL is saved in the app's Event Subscriptions."""
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm", "type": "url_verification"}).encode()
    status, text = await bot.deliver(body, "application/json")
    assert (status, json.loads(text)) == (200, {"challenge": "3eZbrw1aBm"})


async def test_a_retried_event_does_not_start_a_second_session(bot: SlackBot) -> None:
    event = {"type": "message", "channel": "C1", "user": "U1", "text": "!roundtable Tabs?", "ts": "1.1"}
    assert await bot.event(event, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}) == 200
    assert await bot.event({**event, "text": "!roundtable"}) == 200  # a marker that the first was skipped
    await bot.wait(lambda calls: bool(replies(bot.fake)))
    assert statuses(bot.fake) == []


async def test_each_button_acks_at_once_and_posts_its_page_after(bot: SlackBot) -> None:
    await bot.message("!roundtable Tabs or spaces?")
    session_id = session_of(next(c for c in await bot.wait_result() if is_result(c)))
    titles = {
        "discussion": "💬 Discussion (1/1)",
        "proposals": "📋 Proposals (1/1)",
        "stats": "📊 Statistics",
    }
    for action in ACTIONS:
        gate = bot.fake.hold("response_url")  # Slack's side of the response_url does not answer yet
        before = len(bot.fake.calls_to("response_url"))
        status, body = await bot.click(button_id(action, session_id))
        assert (status, body) == (200, "")  # acknowledged while the content is still on its way
        gate.set()
        page = (await bot.responses(before + 1))[-1]
        assert page.args["response_type"] == "ephemeral"
        assert page.args["replace_original"] is False
        assert page.blocks[0]["text"]["text"] == titles[action]
        assert any(session_id in json.dumps(b) for b in page.blocks if b["type"] == "context")


async def test_without_a_response_url_a_button_answers_with_post_ephemeral(bot: SlackBot) -> None:
    await bot.message("!roundtable Tabs or spaces?")
    session_id = session_of(next(c for c in await bot.wait_result() if is_result(c)))
    assert (await bot.click(button_id("stats", session_id), user="U9", with_response_url=False))[0] == 200
    await bot.wait(lambda calls: any(c.method == "chat.postEphemeral" for c in calls))
    [ephemeral] = bot.fake.calls_to("chat.postEphemeral")
    assert bot.fake.calls_to("response_url") == []
    assert (ephemeral.args["channel"], ephemeral.args["user"]) == ("C1", "U9")
    assert ephemeral.blocks[0]["text"]["text"] == "📊 Statistics"


async def test_a_button_for_an_unknown_session_says_so(bot: SlackBot) -> None:
    assert (await bot.click(button_id("discussion", "feedfacecafe")))[0] == 200
    [answer] = await bot.responses(1)
    assert "feedfacecafe" in answer.text


async def test_buttons_work_on_a_fresh_app_instance_after_a_restart(
    start_bot: StartBot, slack_settings: Callable[..., Settings]
) -> None:
    first = await start_bot(slack_settings())
    await first.message("!roundtable Tabs or spaces?")
    session_id = session_of(next(c for c in await first.wait_result() if is_result(c)))
    await first.close()  # the process is gone; only storage remains

    second = await start_bot(slack_settings(workspace=first.runtime.settings.workspace))
    for action in ACTIONS:
        assert (await second.click(button_id(action, session_id)))[0] == 200
    pages = await second.responses(3)
    assert sorted(p.blocks[0]["text"]["text"] for p in pages) == [
        "💬 Discussion (1/1)",
        "📊 Statistics",
        "📋 Proposals (1/1)",
    ]


async def test_a_flaky_llm_still_posts_a_result_with_a_degraded_notice(
    bot: SlackBot, fake_llm: FakeLLM
) -> None:
    fake_llm.set(error_rate=0.5, fail_status=400, seed=3)  # 400: not retried
    await bot.message("!roundtable Flaky or steady? --team full")
    calls = await bot.wait(lambda cs: any(is_result(c) for c in cs))
    result = next(c for c in calls if is_result(c))
    notice = [t for t in section_texts(result) if t.startswith("⚠️ This session is degraded")]
    assert notice
    assert "fell back" in notice[0]
    assert [b["text"]["text"] for b in buttons(result)] == [ACTION_LABELS[a] for a in ACTIONS]


async def test_a_4000_character_topic_is_shown_whole_across_sections(bot: SlackBot) -> None:
    words = "should we rewrite the billing service in a new language or keep improving it"
    topic = (words + " ") * 60
    topic = topic[:3999].rsplit(" ", 1)[0] + "?"
    topic = topic + " " + "x" * (4000 - len(topic) - 1)
    assert len(topic) == 4000
    await bot.message(f"!roundtable {topic}")
    result = next(c for c in await bot.wait_result() if is_result(c))
    texts = section_texts(result)
    question = texts[: next(i for i, t in enumerate(texts) if t.startswith("by "))]
    assert len(question) == 2
    assert question[0].startswith("*Question*\n")
    question[0] = question[0].removeprefix("*Question*\n")
    assert " ".join(question) == topic  # cut at a space between two sections, nothing lost
    assert len(result.text) <= MAX_FALLBACK_TEXT
    assert block_kit_violations(result.args) == []


def long_proposals(body: dict[str, Any]) -> str | None:
    """Each agent proposes at length: a 3,500-character description, a long title and many benefits."""
    if schema_of(body) != "proposal":
        return None
    who = body["messages"][0]["content"].split("You are ", 1)[1].split()[0].strip(".,").lower()
    sentence = f"The {who} plan adds careful steps, measured checkpoints and steady feedback loops. "
    return json.dumps(
        {
            "title": f"The {who} approach " + "with many qualifying words " * 8,
            "description": (sentence * 45).strip(),
            "benefits": [f"{who} benefit number {i} keeps the team informed and calm" for i in range(12)],
            "steps": [f"{who} step {i}: do the next reasonable thing" for i in range(8)],
        }
    )


async def test_six_long_proposals_are_paginated_without_cutting_a_word(
    bot: SlackBot, fake_llm: FakeLLM
) -> None:
    fake_llm.set(responder=long_proposals)
    await bot.message("!roundtable Which plan? --team full")
    result = next(c for c in await bot.wait_result() if is_result(c))
    session_id = session_of(result)
    report = (await bot.service.result(session_id)).report
    assert len(report.proposals) == 6

    # Walk the pages with Next, as a user would, replacing the ephemeral page each time.
    pages: list[Call] = []
    action_id = button_id("proposals", session_id)
    while True:
        assert (await bot.click(action_id, ephemeral=bool(pages)))[0] == 200
        page = (await bot.responses(len(pages) + 1))[-1]
        assert page.args["replace_original"] is bool(pages)
        pages.append(page)
        nav = {b["text"]["text"]: b["action_id"] for b in buttons(page)}
        assert ("◀ Previous" in nav) is (len(pages) > 1)
        if "Next ▶" not in nav:
            break
        action_id = nav["Next ▶"]
    total = len(pages)
    assert total > 1
    assert [p.blocks[0]["text"]["text"] for p in pages] == [
        f"📋 Proposals ({i}/{total})" for i in range(1, total + 1)
    ]

    shown = " ".join(" ".join(section_texts(p)) for p in pages)
    flat = " ".join(shown.split())
    for proposal in report.proposals:
        assert " ".join(proposal.description.split()) in flat  # whole, and no word cut in two
        for benefit in proposal.benefits:
            assert benefit in flat
    for call in bot.fake.messages():
        assert block_kit_violations(call.args) == [], call.method


async def test_a_result_slack_refuses_to_take_is_reported_in_the_channel(bot: SlackBot) -> None:
    bot.fake.fail("files.getUploadURLExternal", "not_allowed_token_type")
    await bot.message("!roundtable Tabs or spaces?")
    calls = await bot.wait(lambda cs: any(c.text.startswith("⚠️ RoundTable:") for c in cs))
    [notice] = [c for c in calls if c.text.startswith("⚠️ RoundTable:")]
    session_id = session_of(next(c for c in calls if is_result(c)))
    assert "could not be posted" in notice.text
    assert "not_allowed_token_type" in notice.text
    assert f"roundtable show {session_id}" in section_texts(notice)[0]


async def test_failed_status_edits_do_not_stop_the_session(bot: SlackBot) -> None:
    bot.fake.fail("chat.update", "message_not_found")
    await bot.message("!roundtable Tabs or spaces?")
    calls = await bot.wait_result()
    assert any(c.method == "chat.update" for c in calls)
    assert not any(c.text.startswith("⚠️") for c in calls)
