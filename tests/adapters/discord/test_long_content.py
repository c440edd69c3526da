"""Results that push Discord's limits: a failing model, a 4,000-character topic, six long proposals.

Every payload is checked twice: the fake Discord refuses what Discord would (400), and
`assert_within_limits` re-checks every recorded message. Nothing may be cut: split text is rebuilt
from the fields and compared with the original, word for word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot import SessionReport, Settings
from bot.chat import button_id
from tests.adapters.discord.harness import (
    ROUTE_EDIT_ORIGINAL,
    ROUTE_FOLLOWUP,
    ROUTE_SEND,
    World,
    assert_within_limits,
    running_bot,
)
from tests.fakes.fake_discord import FakeDiscord, Recorded, custom_ids
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import agent_of, schema_of


def words(text: str) -> str:
    return " ".join(text.split())


def result_payloads(fake: FakeDiscord, session_id: str) -> list[dict[str, Any]]:
    """The result message of a session and the continuation messages posted right after it."""
    sends = [r for r in fake.calls(ROUTE_SEND)]
    first = next(i for i, r in enumerate(sends) if button_id("discussion", session_id) in custom_ids(r.body))
    channel = sends[first].params["channel_id"]
    payloads = [sends[first].body]
    for record in sends[first + 1 :]:
        if record.params["channel_id"] != channel or record.body.get("content"):
            break
        payloads.append(record.body)
    return payloads


def section_text(payloads: list[dict[str, Any]], name: str) -> str:
    """A section's text rebuilt from its fields ("Name", "Name (continued)") over embeds and messages."""
    values = [
        field["value"]
        for payload in payloads
        for embed in payload["embeds"]
        for field in embed.get("fields") or []
        if field["name"] == name or field["name"] == f"{name} (continued)"
    ]
    return " ".join(values)


def field_names(payloads: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for p in payloads for e in p["embeds"] for f in e.get("fields") or []]


async def all_pages(
    fake: FakeDiscord, world: World, result: Recorded, action: str, session_id: str
) -> list[str]:
    """Click the result's button, then "Next ▶" until the last page; the page bodies in order."""
    mark = len(fake.requests)
    await fake.click(result.response["id"], button_id(action, session_id), world.bob)  # type: ignore[arg-type]
    first = await fake.wait_for(lambda r: r.route == ROUTE_FOLLOWUP, since=mark)
    bodies = [first.body["embeds"][0]["description"]]
    message_id = first.response["id"]
    while True:
        ids = custom_ids(fake.messages[message_id])
        next_id = button_id(action, session_id, len(bodies))  # type: ignore[arg-type]
        if next_id not in ids:
            return bodies
        mark = len(fake.requests)
        await fake.click(message_id, next_id, world.bob)
        edit = await fake.wait_for(lambda r: r.route == ROUTE_EDIT_ORIGINAL, since=mark)
        bodies.append(edit.body["embeds"][0]["description"])


async def test_half_failing_model_still_posts_the_result_with_the_degraded_notice(
    world: World, chat_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake_llm.set(error_rate=0.5, fail_status=400, seed=3)  # 400: not retried
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(world.channel["id"], world.alice, "!roundtable Buy or rent the office?")
        )
        report = await bot.finished(outcome)
    assert report.degraded, "half the model calls failed"
    payloads = result_payloads(fake, report.session_id)
    notice = section_text(payloads, "⚠️ Degraded")
    assert notice.startswith("This session is degraded:")
    failed_turns = [d for d in report.degraded if d.agent]
    assert notice.count("•") == len(report.degraded)
    assert failed_turns
    assert assert_within_limits(fake) >= 3


async def test_a_4000_character_topic_is_shown_whole(
    world: World, chat_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """The topic fills the first embed's description; the long proposal continues in a further message."""
    fake_llm.set(responder=long_proposal)
    sentence = "Should the city council fund the new library extension before the bridge repairs?"
    topic = " ".join([sentence] * (4000 // (len(sentence) + 1)))
    topic += " " + "x" * (4000 - len(topic) - 1)
    assert len(topic) == 4000
    fake = world.fake
    async with running_bot(chat_settings(), fake) as bot:
        outcome = await bot.outcome_of(
            fake.slash(world.channel["id"], world.alice, "roundtable", {"topic": topic})
        )
        report = await bot.finished(outcome)
    payloads = result_payloads(fake, report.session_id)
    first = payloads[0]["embeds"][0]
    assert report.topic == topic
    assert first["description"] == f"**Question:** {topic}"
    # what did not fit beside the topic moved on, whole, to a further message
    assert len(payloads) >= 2
    assert report.winner is not None
    assert words(section_text(payloads, f"Proposal by {winner_author(report)}")) == words(
        report.winner.description
    )
    assert assert_within_limits(fake) >= 4


def winner_author(report: SessionReport) -> str:
    from personas import load_personas

    assert report.winner is not None
    persona = load_personas(None)[report.winner.author]
    return f"{persona.emoji} {persona.name}"


def long_proposal(body: dict[str, Any]) -> str | None:
    """Proposals as long as the schema allows, each with text of its own author."""
    if schema_of(body) != "proposal":
        return None
    agent = agent_of(body)
    sentences = [
        f"{agent.capitalize()} step {n} explains one more part of the plan in plain words." for n in range(40)
    ]
    description = " ".join(sentences)[:1500].rsplit(" ", 1)[0]
    return json.dumps(
        {
            "title": f"The {agent} plan: a careful, measured and reversible path through the whole decision"[
                :120
            ],
            "description": description,
            "benefits": [
                f"{agent} benefit {n}: " + "lower risk and clearer ownership for everyone " * 3
                for n in range(5)
            ],
            "steps": [
                f"{agent} action {n}: " + "agree, measure, review and adjust together " * 4 for n in range(8)
            ],
        }
    )


async def test_six_long_proposals_are_split_and_paginated_without_losing_a_word(
    world: World, chat_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake_llm.set(responder=long_proposal)
    fake = world.fake
    async with running_bot(chat_settings(team="full"), fake) as bot:
        outcome = await bot.outcome_of(
            fake.send_message(
                world.channel["id"], world.alice, "!roundtable Which plan do we follow? --team full"
            )
        )
        report = await bot.finished(outcome)
        session_id = report.session_id
        assert len(report.proposals) == 6
        payloads = result_payloads(fake, session_id)
        result = next(r for r in fake.calls(ROUTE_SEND) if r.body is payloads[0])
        pages = await all_pages(fake, world, result, "proposals", session_id)

    winner = report.winner
    assert winner is not None
    assert words(section_text(payloads, f"Proposal by {winner_author(report)}")) == words(winner.description)
    assert words(section_text(payloads, "Benefits")) == words(" ".join(f"• {b}" for b in winner.benefits))
    steps = " ".join(f"{i}. {s}" for i, s in enumerate(winner.steps, 1))
    assert words(section_text(payloads, "Steps")) == words(steps)
    votes = section_text(payloads, f"Votes · {report.voting_rule}")
    assert all(p.title in votes for p in report.proposals)
    names = field_names(payloads)
    assert "Proposal by" in names[0]
    assert sum(name.endswith("(continued)") for name in names) >= 2, "long sections were split"

    assert len(pages) >= 6
    text = words(" ".join(pages))
    for proposal in report.proposals:
        assert words(proposal.description) in text
        for benefit in proposal.benefits:
            assert words(benefit) in text
    for body in pages:  # a page ends where a sentence, line or word ends
        assert body == body.strip()
        assert len(body) <= 4000
    assert assert_within_limits(fake) >= len(pages) + 3
