"""Block Kit rendering as pure functions: every message within Slack's limits, nothing cut inside a word."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapters.slack.blocks import (
    MAX_BLOCKS,
    MAX_FALLBACK_TEXT,
    MAX_SECTION_TEXT,
    SlackMessage,
    actions,
    button,
    context,
    escape,
    header,
    mrkdwn_chunks,
    section,
    sections,
    shorten,
    split_messages,
    unescape,
)
from adapters.slack.listeners import is_user_message, strip_mention
from adapters.slack.render import (
    PAGE_CHARS,
    notice_message,
    page_message,
    progress_message,
    result_messages,
    statistics_pages,
)
from bot import SessionReport
from bot.chat import ACTIONS, button_id
from bot.views import (
    AgentProgress,
    AgentRef,
    AgentStats,
    Page,
    ProgressView,
    StatisticsView,
    VoteSummary,
    build_result_view,
)
from personas import load_personas
from tests.fakes.fake_slack import block_kit_violations

PERSONAS = load_personas()
WORDS = re.compile(r"\S+")


def valid(message: SlackMessage) -> SlackMessage:
    assert block_kit_violations(message.payload()) == [], message.payload()
    assert len(message.text) <= MAX_FALLBACK_TEXT
    return message


def shown_text(messages: list[SlackMessage]) -> str:
    """All section text of `messages`, unescaped, whitespace collapsed."""
    texts = [b["text"]["text"] for m in messages for b in m.blocks if b["type"] == "section"]
    return " ".join(unescape(" ".join(texts)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


TALLY: dict[str, Any] = {
    "rule": "rated",
    "winner": "P2",
    "scores": {"P1": 3, "P2": 6, "P3": 1},
    "ranking": ["P2", "P1", "P3"],
    "tied": [],
    "tiebreak": None,
    "valid_ballots": 3,
    "abstentions": 0,
    "invalid": [],
    "consensus": 0.6,
    "score_share": 0.6,
    "absolute_majority": None,
    "unanimity_reached": None,
    "fallback": None,
    "condorcet_winner": None,
}


def doc(**overrides: Any) -> dict[str, Any]:
    proposals = [
        {
            "id": f"P{i}",
            "author": author,
            "title": f"Plan {i}",
            "description": f"Do thing {i}.",
            "benefits": ["cheap"],
            "steps": ["start"],
        }
        for i, author in enumerate(["analyst", "creative", "skeptic"], 1)
    ]
    base: dict[str, Any] = {
        "session_id": "abc123def456",
        "status": "completed",
        "topic": "Tabs or spaces?",
        "voting_rule": "rated",
        "team": ["analyst", "creative", "skeptic"],
        "rounds_planned": 1,
        "rounds_run": 1,
        "stopped_early": False,
        "stop_reason": None,
        "winner": proposals[1],
        "tally": TALLY,
        "proposals": proposals,
        "ballots": [],
        "transcript": [{"round": 1, "agent": "analyst", "content": "Hello", "fallback": False}],
        "degraded": [],
        "usage": {"llm_calls": 9, "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.0},
        "duration_s": 1.5,
        "seed": 0,
        "model": None,
    }
    base.update(overrides)
    return base


def report(**overrides: Any) -> SessionReport:
    """`doc` as the engine hands it to the views."""
    return SessionReport.model_validate(doc(**overrides))


# --- building blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("three little words", 12, "three…"),
        ("one\n two   three", 50, "one two three"),
        ("a" * 20, 10, "a" * 9 + "…"),  # one word longer than the limit: the only inside cut
    ],
)
def test_shorten_cuts_at_a_word_and_marks_the_cut(text: str, limit: int, expected: str) -> None:
    assert shorten(text, limit) == expected
    assert len(shorten(text, limit)) <= limit


def test_escaping_never_pushes_a_chunk_past_the_limit() -> None:
    text = " ".join(["a&b<c>d"] * 1000)  # each word grows from 7 to 19 characters when escaped
    chunks = mrkdwn_chunks(text, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert unescape(" ".join(chunks)) == text


def test_escape_round_trips() -> None:
    assert escape("<@U1> & co") == "&lt;@U1&gt; &amp; co"
    assert unescape(escape("<@U1> & co")) == "<@U1> & co"


def test_sections_split_long_text_at_boundaries_and_lose_nothing() -> None:
    text = " ".join(f"word{i}" for i in range(2000))  # ~15,000 characters
    blocks = sections(text, title="*Title*")
    assert len(blocks) > 1
    assert all(len(b["text"]["text"]) <= MAX_SECTION_TEXT for b in blocks)
    assert blocks[0]["text"]["text"].startswith("*Title*\n")
    joined = " ".join(b["text"]["text"] for b in blocks).removeprefix("*Title*\n")
    assert WORDS.findall(joined) == WORDS.findall(text)


def test_a_header_too_long_to_show_whole_gives_way_to_its_fallback() -> None:
    assert header("x " * 100, fallback="Short")["text"]["text"] == "Short"
    assert header("Fine title", fallback="Short")["text"]["text"] == "Fine title"


def test_context_makes_another_block_past_ten_elements() -> None:
    blocks = context([f"item {i}" for i in range(23)])
    assert [len(b["elements"]) for b in blocks] == [10, 10, 3]


def test_button_labels_are_shortened_to_75_characters_and_carry_the_id() -> None:
    element = button("label " * 30, "rt:stats:abc:0")
    assert len(element["text"]["text"]) <= 75
    assert element["action_id"] == element["value"] == "rt:stats:abc:0"


def test_more_than_fifty_blocks_become_several_messages_and_actions_keep_their_neighbour() -> None:
    blocks = [section(f"part {i}") for i in range(MAX_BLOCKS)] + actions([button("Go", "go")])
    messages = split_messages("Long message", blocks)
    assert [len(m.blocks) for m in messages] == [49, 2]
    assert messages[1].blocks[-1]["type"] == "actions"
    assert messages[1].blocks[0]["type"] == "section"
    assert messages[1].text == "Long message (part 2 of 2)"
    assert [b for m in messages for b in m.blocks] == blocks
    for message in messages:
        valid(message)


# --- messages ------------------------------------------------------------------------------------


def test_the_result_has_a_header_question_votes_and_the_three_buttons() -> None:
    [message] = result_messages(build_result_view(report(), PERSONAS))
    valid(message)
    assert message.text == "RoundTable decision: Plan 2"
    assert message.blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "🏆 Plan 2"}}
    elements = message.blocks[-1]["elements"]
    assert [e["action_id"] for e in elements] == [button_id(a, "abc123def456") for a in ACTIONS]
    assert "🏆 P2 ██████░░░░ 60% · 6 — Plan 2" in shown_text([message])


def test_a_result_with_no_decision_says_why() -> None:
    view = build_result_view(
        report(
            winner=None,
            tally={**TALLY, "winner": None},
            degraded=[{"agent": None, "step": "votes", "reason": "no ballots"}],
        ),
        PERSONAS,
    )
    [message] = result_messages(view)
    valid(message)
    assert message.blocks[0]["text"]["text"] == "🤷 No decision"
    assert "No decision was reached: no ballots." in shown_text([message])
    assert message.text == "RoundTable reached no decision on: Tabs or spaces?"


def test_a_huge_result_is_split_into_valid_messages_with_every_word_shown() -> None:
    """A 4,000-character topic, a 300-character winning title and 200 benefits: nothing cut, nothing lost."""
    topic = " ".join(f"topic{i}" for i in range(600))[:4000].rsplit(" ", 1)[0]
    title = " ".join(["very long title"] * 20)
    benefits = [f"benefit {i} " + "explained at some length " * 4 for i in range(200)]
    winner = {
        **doc()["proposals"][1],
        "title": title,
        "benefits": benefits,
        "description": "x & y < z " * 500,
    }
    proposals = [doc()["proposals"][0], winner, doc()["proposals"][2]]
    view = build_result_view(report(topic=topic, winner=winner, proposals=proposals), PERSONAS)
    messages = result_messages(view)
    for message in messages:
        valid(message)
    assert len(messages) > 1
    assert messages[0].blocks[0]["text"]["text"] == "🏆 RoundTable decision"  # the title is too long for it
    shown = shown_text(messages)
    for part in (topic, title, flat(winner["description"]), *benefits):
        assert flat(part) in shown
    assert [b["type"] for b in messages[-1].blocks][-1] == "actions"


def test_the_degraded_notice_lists_every_failed_turn() -> None:
    degraded = [{"agent": "skeptic", "step": f"round-{i}", "reason": "timeout"} for i in range(1, 4)]
    [message] = result_messages(build_result_view(report(degraded=degraded), PERSONAS))
    valid(message)
    shown = shown_text([message])
    assert "⚠️ This session is degraded: 3 agent turns failed and fell back" in shown
    assert all(f"at round-{i}: timeout" in shown for i in range(1, 4))


def test_the_progress_message_shows_each_agent_and_a_short_gist() -> None:
    ref = AgentRef(id="analyst", name="Analyst", emoji="📊")
    view = ProgressView(
        session_id="abc",
        title="Discussion round 1 of 2",
        phase=None,
        step="round-1",
        round=1,
        rounds_planned=2,
        agents=[
            AgentProgress(agent=ref, status="spoken", detail="long gist " * 200),
            AgentProgress(agent=ref, status="typing"),
        ],
        notes=[],
        elapsed_s=3.2,
        finished=False,
    )
    message = valid(progress_message(view))
    assert message.text == "RoundTable: Discussion round 1 of 2"
    lines = message.blocks[1]["text"]["text"].split("\n")
    assert lines[0].startswith("✅ 📊 Analyst · spoken — long gist")
    assert lines[0].endswith("…")
    assert lines[1] == "✍️ 📊 Analyst · typing…"


def test_pages_have_previous_and_next_buttons_only_where_there_is_a_page() -> None:
    pages = [Page(title="Discussion", body=f"page {i}", index=i, total=3) for i in range(3)]
    navs = [
        [e["text"]["text"] for e in valid(page_message(p, "discussion", "abc")).blocks[-1]["elements"]]
        for p in pages
    ]
    assert navs == [["Next ▶"], ["◀ Previous", "Next ▶"], ["◀ Previous"]]
    middle = page_message(pages[1], "discussion", "abc")
    assert [e["action_id"] for e in middle.blocks[-1]["elements"]] == [
        "rt:discussion:abc:0",
        "rt:discussion:abc:2",
    ]
    single = page_message(Page(title="Proposals", body="all", index=0, total=1), "proposals", "abc")
    assert all(b["type"] != "actions" for b in single.blocks)


def test_statistics_are_paged_ten_agents_at_a_time() -> None:
    agent = AgentStats(
        agent=AgentRef(id="a", name="A", emoji="🅰"),
        turns=2,
        fallbacks=1,
        words=1,
        mean_latency_ms=12.0,
        usage=None,
        vote=VoteSummary(status="voted", text="chose P1"),
    )
    stats = StatisticsView(
        session_id="abc", agents=[agent] * 23, total_turns=46, total_words=23, usage_line="u"
    )
    pages = statistics_pages(stats)
    assert [p.blocks[0]["text"]["text"] for p in pages] == [f"📊 Statistics ({i}/3)" for i in (1, 2, 3)]
    for page in pages:
        valid(page)
    assert sum(b["type"] == "section" for p in pages for b in p.blocks) == 23
    assert (
        pages[0].blocks[1]["text"]["text"]
        == "*🅰 A*\n2 turns (1 fell back) · 1 word · 12 ms a turn\nvote: chose P1"
    )


def test_a_notice_escapes_what_slack_would_read_as_markup() -> None:
    message = valid(notice_message("usage: !roundtable <topic> & more"))
    assert message.blocks[0]["text"]["text"] == "usage: !roundtable &lt;topic&gt; &amp; more"


# --- event filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@UBOT> should we?", "should we?"),
        ("<@UBOT|roundtable> should we?", "should we?"),
        ("hey <@UBOT> should we?", "hey   should we?"),
        ("<@UOTHER> should we?", "<@UOTHER> should we?"),
    ],
)
def test_strip_mention_removes_only_the_bot(text: str, expected: str) -> None:
    assert strip_mention(text, "UBOT") == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"user": "U1", "text": "hi"}, True),
        ({"user": "U1", "text": "hi", "subtype": "thread_broadcast"}, True),
        ({"user": "U1", "text": "hi", "subtype": "message_changed"}, False),
        ({"user": "U1", "text": "hi", "bot_id": "B1"}, False),
        ({"text": "hi"}, False),
        ({"user": "U1", "text": "<@UBOT> hi"}, False),  # app_mention answers it
    ],
)
def test_which_messages_are_people_writing(event: dict[str, Any], expected: bool) -> None:
    assert is_user_message(event, "UBOT") is expected


def test_a_full_page_of_text_that_grows_when_escaped_is_still_one_valid_message() -> None:
    body = ("a&b <c> " * 1000)[:PAGE_CHARS].strip()
    message = valid(page_message(Page(title="Discussion", body=body, index=0, total=1), "discussion", "abc"))
    assert shown_text([message]) == flat(body)
