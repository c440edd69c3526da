"""The pure renderer: view-models to Discord payloads, checked against Discord's limits without a client.

The limits are checked by the fake Discord's own `limit_problems`, written from Discord's documentation,
not by the adapter's constants.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.limits import fit_heading
from adapters.discord.render import (
    CHART_FILENAME,
    MessageSpec,
    Section,
    nav_buttons,
    pack_embeds,
    progress_embed,
    reply_chunks,
    result_messages,
    statistics_messages,
)
from bot.chat import button_id
from bot.views import (
    AgentProgress,
    AgentRef,
    AgentStats,
    DegradedEntry,
    DegradedNotice,
    ProgressView,
    ResultView,
    StatisticsView,
    VoteBar,
    VoteSummary,
)
from tests.fakes.fake_discord import limit_problems

ANALYST = AgentRef(id="analyst", name="Analyst", emoji="📊")


def words(text: str) -> list[str]:
    return text.split()


def prose(n_sentences: int, tag: str = "") -> str:
    return " ".join(
        f"Sentence {tag}{i} adds a point about the plan and its cost." for i in range(n_sentences)
    )


def payload(spec: MessageSpec) -> dict[str, Any]:
    return {"content": spec.content, "embeds": spec.embeds}


def result_view(**overrides: Any) -> ResultView:
    fields: dict[str, Any] = {
        "session_id": "ab12cd34ef56",
        "status": "completed",
        "topic": "Should we move to Postgres?",
        "decided": True,
        "no_decision_reason": None,
        "winner_id": "P1",
        "winner_title": "Move in two steps",
        "author": ANALYST,
        "description": "Start with the read path.",
        "benefits": ["less risk"],
        "steps": ["copy the data", "switch reads"],
        "consensus_percent": 80,
        "rounds_run": 1,
        "rounds_planned": 1,
        "stopped_early": False,
        "stop_reason": None,
        "voting_rule": "ranked",
        "votes": [
            VoteBar(id="P1", title="Move in two steps", author=ANALYST, score=4, share=0.8, is_winner=True),
            VoteBar(id="P2", title="Stay", author=None, score=1, share=0.2, is_winner=False),
        ],
        "degraded": None,
        "usage_line": "9 LLM calls · 100+20 tokens · $0.0000 · 1.0s",
        "cost_usd": 0.0,
        "duration_s": 1.0,
    }
    fields.update(overrides)
    return ResultView(**fields)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short title", 20, "short title"),
        ("a title that is much too long for its place", 20, "a title that is…"),
        ("Punctuation, then more words here", 16, "Punctuation…"),
        ("x" * 30, 10, "x" * 9 + "…"),  # one word longer than the limit: the only cut inside a word
        ("spaces   and\nnewlines   collapse", 40, "spaces and newlines collapse"),
    ],
)
def test_fit_heading_shortens_at_a_word_boundary(text: str, limit: int, expected: str) -> None:
    assert fit_heading(text, limit) == expected
    assert len(fit_heading(text, limit)) <= limit


def test_pack_embeds_spreads_long_sections_over_fields_embeds_and_messages() -> None:
    sections = [Section(f"Part {n}", prose(40, f"{n}.")) for n in range(12)]
    messages = pack_embeds(title="A title", description=prose(200, "d."), sections=sections, footer="foot")
    assert len(messages) > 1
    for embeds in messages:
        assert not limit_problems({"embeds": embeds})
    fields = [f for embeds in messages for e in embeds for f in e.get("fields") or []]
    first = messages[0][0]
    assert first["title"] == "A title"
    assert first["footer"] == {"text": "foot"}
    rebuilt = [first["description"]] + [f["value"] for f in fields]
    expected = prose(200, "d.") + " " + " ".join(prose(40, f"{n}.") for n in range(12))
    assert words(" ".join(rebuilt)) == words(expected), "nothing is lost or reordered"
    assert all(messages[i][0]["title"] == "A title (continued)" for i in range(1, len(messages)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=300).filter(lambda s: s.strip() != ""),
            st.lists(st.from_regex(r"[a-z]{1,30}[.,!?]?", fullmatch=True), min_size=1, max_size=400),
        ),
        min_size=0,
        max_size=40,
    ),
    st.integers(min_value=0, max_value=6000),
)
@pytest.mark.slow  # property-based, hundreds of examples
def test_pack_embeds_keeps_every_word_within_every_limit(
    sections: list[tuple[str, list[str]]], description_words: int
) -> None:
    description = " ".join(["word"] * (description_words // 5))
    packed = pack_embeds(
        title="T" * 300,
        description=description,
        sections=[Section(name, " ".join(body)) for name, body in sections],
        footer="F" * 3000,
    )
    for embeds in packed:
        assert not limit_problems({"embeds": embeds})
    values = [e.get("description", "") for m in packed for e in m] + [
        f["value"] for m in packed for e in m for f in e.get("fields") or []
    ]
    expected = words(description) + [w for _, body in sections for w in body]
    assert words(" ".join(values)) == expected


def test_result_carries_chart_buttons_and_session_facts() -> None:
    [spec] = result_messages(result_view(), chart=True)
    embed = spec.embeds[0]
    assert spec.chart
    assert embed["image"] == {"url": f"attachment://{CHART_FILENAME}"}
    assert embed["title"] == "🏆 Move in two steps"
    assert embed["description"] == "**Question:** Should we move to Postgres?"
    assert [f["name"] for f in embed["fields"]] == [
        "Proposal by 📊 Analyst",
        "Benefits",
        "Steps",
        "Votes · ranked",
        "Consensus",
        "Rounds",
    ]
    assert [b.custom_id for b in spec.buttons] == [
        button_id(a, "ab12cd34ef56") for a in ("discussion", "proposals", "stats")
    ]
    assert embed["footer"]["text"].endswith("session ab12cd34ef56")


def test_a_winner_title_past_256_characters_is_shortened_in_the_title_and_kept_whole_in_a_field() -> None:
    title = " ".join(["Longtitleword"] * 40)
    [spec] = result_messages(result_view(winner_title=title), chart=False)
    embed = spec.embeds[0]
    assert len(embed["title"]) <= 256
    assert embed["title"].endswith("…")
    assert embed["fields"][0]["name"] == "Winning proposal"
    assert words(embed["fields"][0]["value"]) == words(title)
    assert "image" not in embed
    assert not spec.chart


def test_no_decision_and_a_degraded_session_say_why() -> None:
    notice = DegradedNotice(
        summary="This session is degraded: 2 agent turns failed and fell back; treat the result with care.",
        entries=[DegradedEntry(agent=ANALYST, step="round-1", reason="model error")] * 2,
    )
    view = result_view(
        decided=False,
        winner_id=None,
        winner_title=None,
        author=None,
        description=None,
        no_decision_reason="No decision was reached: no valid ballot was cast.",
        consensus_percent=None,
        votes=[],
        degraded=notice,
    )
    [spec] = result_messages(view, chart=False)
    fields = {f["name"]: f["value"] for f in spec.embeds[0]["fields"]}
    assert spec.embeds[0]["title"] == "🤝 No decision"
    assert fields["Why"] == "No decision was reached: no valid ballot was cast."
    assert fields["Votes · ranked"] == "No proposal was voted on."
    assert fields["⚠️ Degraded"].startswith(notice.summary)
    assert fields["⚠️ Degraded"].count("• 📊 Analyst at round-1: model error") == 2


def test_progress_embed_stays_within_limits_with_many_chatty_agents() -> None:
    agents = [
        AgentProgress(
            agent=AgentRef(id=f"a{i}", name=f"Agent {i}", emoji="🤖"),
            status="spoken",
            detail=prose(30, str(i)),
        )
        for i in range(60)
    ]
    view = ProgressView(
        session_id="ab12cd34ef56",
        title="Discussion round 2 of 3",
        phase="discussion",
        step="round-2",
        round=2,
        rounds_planned=3,
        agents=agents,
        notes=[prose(20, f"n{i}.") for i in range(5)],
        elapsed_s=12.4,
        finished=False,
    )
    embed = progress_embed(view)
    assert not limit_problems({"embeds": [embed]})
    assert embed["title"] == "⏳ RoundTable · Discussion round 2 of 3"
    assert embed["description"].splitlines()[0].startswith("🤖 **Agent 0** · spoken — Sentence 0")
    assert embed["description"].splitlines()[-1].startswith("… and ")
    assert embed["footer"]["text"] == "12s elapsed · session ab12cd34ef56"


def test_statistics_of_a_large_team_are_paged_with_buttons_to_each_neighbour() -> None:
    stats = StatisticsView(
        session_id="ab12cd34ef56",
        agents=[
            AgentStats(
                agent=AgentRef(id=f"a{i}", name=f"Agent {i}", emoji="🤖"),
                turns=3,
                fallbacks=1,
                words=300,
                mean_latency_ms=812.0,
                usage=None,
                vote=VoteSummary(status="voted", text=prose(8, str(i))),
            )
            for i in range(40)
        ],
        total_turns=120,
        total_words=12000,
        usage_line="1 LLM call · 1+1 tokens · $0.0000 · 1.0s",
    )
    pages = statistics_messages(stats)
    assert len(pages) >= 2
    for i, spec in enumerate(pages):
        assert not limit_problems(payload(spec))
        ids = [b.custom_id for b in spec.buttons]
        assert ids == [button_id("stats", "ab12cd34ef56", p) for p in (i - 1, i + 1) if 0 <= p < len(pages)]
    names = [f["name"] for spec in pages for e in spec.embeds for f in e.get("fields") or []]
    assert names == [f"🤖 Agent {i}" for i in range(40)]


@pytest.mark.parametrize(
    ("index", "total", "targets"),
    [(0, 1, []), (0, 3, [1]), (1, 3, [0, 2]), (2, 3, [1])],
)
def test_nav_buttons_point_at_the_neighbouring_pages(index: int, total: int, targets: list[int]) -> None:
    buttons = nav_buttons("proposals", "ab12cd34ef56", index, total)
    assert [b.ref.page for b in buttons] == targets
    assert len({b.custom_id for b in buttons}) == len(buttons)


def test_replies_fit_discords_content_limit_and_multi_line_text_keeps_its_layout() -> None:
    assert reply_chunks("a one-line refusal") == ["a one-line refusal"]
    assert reply_chunks("usage: x\n  --rounds N  rounds") == ["```\nusage: x\n  --rounds N  rounds\n```"]
    long = prose(200)
    chunks = reply_chunks(long)
    assert len(chunks) > 1
    assert all(len(c) <= 2000 for c in chunks)
    assert words(" ".join(chunks)) == words(long)
