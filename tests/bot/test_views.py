"""The platform-neutral view-models in bot/views: result, pages, statistics, progress, text splitting."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from bot import Progress, tally_text
from bot.views import (
    Page,
    ProgressTracker,
    build_result_view,
    discussion_pages,
    proposal_pages,
    split_text,
    statistics_view,
)
from bot.views.result import consensus_percent
from engine.errors import BadRequest
from engine.report import SessionReport
from engine.voting import TallyResult
from personas import Persona, load_personas

TEAM = ["analyst", "creative", "skeptic", "pragmatist", "ethicist"]
AUTHORS = {"P1": "analyst", "P2": "creative", "P3": "skeptic", "P4": "pragmatist", "P5": "ethicist"}
BALLOTS: list[dict[str, Any]] = [
    {"voter": "analyst", "ranking": ["P2", "P4", "P1", "P3", "P5"]},
    {"voter": "creative", "ranking": ["P4", "P1", "P3", "P5"]},
    {"voter": "skeptic", "ranking": ["P2", "P4", "P1", "P5"]},
    {"voter": "pragmatist", "ranking": ["P2", "P1", "P3", "P5"]},
    {"voter": "ethicist", "ranking": ["P2", "P2", "P1"]},
]
#: What the real counter says about BALLOTS with recusal (pinned by test_fixture_tally_matches_counter).
TALLY: dict[str, Any] = {
    "rule": "ranked",
    "winner": "P2",
    "scores": {"P1": 8, "P2": 12, "P3": 6, "P4": 10, "P5": 4},
    "ranking": ["P2", "P4", "P1", "P3", "P5"],
    "tied": [],
    "tiebreak": None,
    "valid_ballots": 4,
    "abstentions": 1,
    "invalid": [{"voter": "ethicist", "reason": "repeated candidate 'P2'"}],
    "consensus": 0.75,
    "score_share": 0.3,
    "absolute_majority": None,
    "unanimity_reached": None,
    "fallback": None,
    "condorcet_winner": "P2",
}


def _proposal(pid: str, title: str, description: str) -> dict[str, Any]:
    return {
        "id": pid,
        "author": AUTHORS[pid],
        "title": title,
        "description": description,
        "benefits": [f"{title} is cheap to try", "it can be reversed"],
        "steps": ["agree an owner", "run a two-week pilot", "review the numbers"],
    }


@pytest.fixture(scope="module")
def personas() -> dict[str, Persona]:
    return load_personas()


@pytest.fixture
def doc() -> dict[str, Any]:
    """A completed 5-agent, 2-round, 5-proposal session with a ranked tally and one failed turn."""
    proposals = [
        _proposal("P1", "Measure first", "Collect a month of data before deciding anything."),
        _proposal("P2", "Four-day pilot", "Run a four-day week for one team for a quarter."),
        _proposal("P3", "Keep the status quo", "Change nothing until the risks are understood."),
        _proposal("P4", "Flexible Fridays", "Let every team choose its own Friday hours."),
        _proposal("P5", "Ask the staff", "Hold a consultation and let staff vote on it."),
    ]
    transcript = [
        {
            "round": 1,
            "agent": "analyst",
            "content": "The data on four-day weeks is mixed. Output held.",
            "fallback": False,
        },
        {
            "round": 1,
            "agent": "creative",
            "content": "What if we pilot it with one team first?",
            "fallback": False,
        },
        {"round": 1, "agent": "skeptic", "content": "Pilots suffer from novelty effects.", "fallback": False},
        {
            "round": 1,
            "agent": "pragmatist",
            "content": "A pilot costs little and can stop anytime.",
            "fallback": False,
        },
        {"round": 1, "agent": "ethicist", "content": "Staff must consent to the change.", "fallback": False},
        {"round": 2, "agent": "analyst", "content": "Agreed, a pilot with clear metrics.", "fallback": False},
        {
            "round": 2,
            "agent": "creative",
            "content": "One quarter, one team, then review.",
            "fallback": False,
        },
        {"round": 2, "agent": "skeptic", "content": "(no reply: timeout)", "fallback": True},
        {"round": 2, "agent": "pragmatist", "content": "Fine by me.", "fallback": False},
        {"round": 2, "agent": "ethicist", "content": "With an opt-out for anyone.", "fallback": False},
    ]
    by_agent = {
        agent: {
            "llm_calls": 3,
            "prompt_tokens": 100 * (i + 1),
            "completion_tokens": 10 * (i + 1),
            "cost_usd": 0.001,
        }
        for i, agent in enumerate(TEAM)
    }
    return {
        "session_id": "s-123",
        "status": "completed",
        "topic": "Should we move to a four-day week?",
        "voting_rule": "ranked",
        "team": TEAM,
        "rounds_planned": 3,
        "rounds_run": 2,
        "stopped_early": True,
        "stop_reason": "every agent was ready",
        "winner": proposals[1],
        "tally": copy.deepcopy(TALLY),
        "proposals": proposals,
        "ballots": copy.deepcopy(BALLOTS),
        "transcript": transcript,
        "degraded": [{"agent": "skeptic", "step": "round-2", "reason": "timeout"}],
        "usage": {
            "llm_calls": 15,
            "prompt_tokens": 1500,
            "completion_tokens": 150,
            "cost_usd": 0.005,
            "by_agent": by_agent,
            "by_phase": {},
        },
        "duration_s": 41.5,
        "seed": 0,
        "model": None,
    }


def report(doc: dict[str, Any]) -> SessionReport:
    """The fixture document as the engine hands it over, validated as a stored document is."""
    return SessionReport.model_validate(doc)


def test_fixture_tally_matches_counter() -> None:
    """The hand-written tally is what the real counter gives for the fixture's ballots."""
    ballot_doc = {"rule": "ranked", "candidates": list(AUTHORS), "authors": AUTHORS, "recusal": True}
    assert tally_text(json.dumps({**ballot_doc, "ballots": BALLOTS})) == TALLY


# -- result -----------------------------------------------------------------------------------------


def test_result_view_carries_the_decision(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    view = build_result_view(report(doc), personas)
    assert view.decided
    assert view.no_decision_reason is None
    assert (view.topic, view.winner_id, view.winner_title) == (doc["topic"], "P2", "Four-day pilot")
    assert view.author is not None
    assert (view.author.id, view.author.name, view.author.emoji) == ("creative", "Creative", "💡")
    assert view.description == "Run a four-day week for one team for a quarter."
    assert view.consensus_percent == 75
    assert (view.rounds_run, view.rounds_planned, view.stop_reason) == (2, 3, "every agent was ready")
    assert view.rounds_text == "2/3 rounds (every agent was ready)"
    assert view.voting_rule == "ranked"
    assert view.benefits == ["Four-day pilot is cheap to try", "it can be reversed"]
    assert view.steps[1] == "run a two-week pilot"
    assert view.session_id == "s-123"
    assert view.usage_line == "15 LLM calls · 1500+150 tokens · $0.0050 · 41.5s"


def test_vote_distribution_follows_tally_ranking(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    """Bars come in ranking order, with shares of the total score and only the winner marked."""
    votes = build_result_view(report(doc), personas).votes
    assert [v.id for v in votes] == ["P2", "P4", "P1", "P3", "P5"]
    assert [v.score for v in votes] == [12, 10, 8, 6, 4]
    assert [v.share for v in votes] == pytest.approx([0.3, 0.25, 0.2, 0.15, 0.1])
    assert [v.is_winner for v in votes] == [True, False, False, False, False]
    assert votes[1].title == "Flexible Fridays"
    assert votes[1].author is not None
    assert votes[1].author.label == "🔧 Pragmatist"


def test_degraded_notice_lists_failed_turns(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    notice = build_result_view(report(doc), personas).degraded
    assert notice is not None
    assert "1 agent turn failed" in notice.summary
    assert [e.text for e in notice.entries] == ["🔍 Skeptic at round-2: timeout"]


def test_clean_session_has_no_degraded_notice(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    doc["degraded"] = []
    assert build_result_view(report(doc), personas).degraded is None


def test_no_winner_says_there_was_no_decision_and_why(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    """A session with winner null: no winner fields, a reason from the degraded list, zero-score bars."""
    doc["winner"] = None
    doc["tally"] = {**TALLY, "winner": None, "scores": dict.fromkeys(AUTHORS, 0), "consensus": 0.0}
    doc["degraded"].append({"agent": None, "step": "votes", "reason": "no valid ballot was cast"})
    view = build_result_view(report(doc), personas)
    assert not view.decided
    assert view.no_decision_reason == "No decision was reached: no valid ballot was cast."
    assert view.winner_id is None
    assert view.author is None
    assert view.consensus_percent is None
    assert view.benefits == []
    assert view.steps == []
    assert view.degraded is not None
    assert "1 step did not complete normally" in view.degraded.summary
    assert all(v.share == 0.0 and not v.is_winner for v in view.votes)


def test_the_exact_consensus_is_shown_as_a_whole_percent(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    doc["tally"]["consensus"] = 2 / 3
    assert build_result_view(report(doc), personas).consensus_percent == 67


@pytest.mark.parametrize("valid_ballots", range(1, 13))
def test_views_show_the_exact_consensus_as_they_showed_the_rounded_one(valid_ballots: int) -> None:
    """Reports used to carry the consensus rounded to 4 decimals; every share of up to 12 ballots still
    shows as the same whole percent."""
    for tops in range(valid_ballots + 1):
        exact = tops / valid_ballots
        tally = TallyResult.model_validate({**TALLY, "consensus": exact})
        assert consensus_percent(tally) == round(round(exact, 4) * 100)


def test_unknown_persona_falls_back_to_its_id(doc: dict[str, Any]) -> None:
    """An agent whose persona is not loaded is still shown, by id, with a neutral emoji."""
    view = build_result_view(report(doc), {})
    assert view.author is not None
    assert view.author.label == "👤 creative"


# -- text splitting ---------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


SENTENCE = "The pilot team keeps its output steady while staff report better rest. "
LONG_TEXT = (
    (SENTENCE * 6).strip()
    + "\n\n"
    + "A list:\n• first item here\n• second item here\n\n"
    + (SENTENCE * 20).strip()
    + "\n\n"
    + "Pneumonoultramicroscopicsilicovolcanoconiosis"
)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short text", 100, ["short text"]),
        ("   ", 10, []),
        ("one two three", 7, ["one two", "three"]),
        ("First one. Second one.", 12, ["First one.", "Second one."]),
        ("Para one.\n\nPara two is here.", 20, ["Para one.", "Para two is here."]),
        ("a\nb\nc", 3, ["a\nb", "c"]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
    ],
)
def test_split_text_cuts_at_the_largest_boundary(text: str, limit: int, expected: list[str]) -> None:
    assert split_text(text, limit) == expected


LONGEST_WORD = max(len(w) for w in LONG_TEXT.split())


@pytest.mark.parametrize("limit", [LONGEST_WORD, 50, 73, 100, 300, 1024])
def test_split_text_keeps_everything_and_breaks_no_word(limit: int) -> None:
    """Chunks fit the limit and rejoin to exactly the original words, none split."""
    chunks = split_text(LONG_TEXT, limit)
    assert len(chunks) > 1 or limit == 1024
    assert all(len(c) <= limit for c in chunks)
    assert _words(" ".join(chunks)) == _words(LONG_TEXT)


@pytest.mark.parametrize("limit", [1, 7, 12, LONGEST_WORD - 1])
def test_split_text_hard_splits_only_a_word_longer_than_the_limit(limit: int) -> None:
    """Below the longest word, that word alone is cut; every other word stays whole."""
    chunks = split_text(LONG_TEXT, limit)
    assert all(len(c) <= limit for c in chunks)
    assert "".join(" ".join(chunks).split()) == "".join(LONG_TEXT.split())
    short_words = {w for w in _words(LONG_TEXT) if len(w) <= limit}
    broken = [w for c in chunks for w in _words(c) if w not in short_words]
    assert "".join(broken) == "".join(w for w in _words(LONG_TEXT) if len(w) > limit)


def test_split_text_prefers_paragraphs_to_sentences() -> None:
    text = "Alpha beta gamma.\n\nDelta epsilon. Zeta eta theta."
    assert split_text(text, 33) == ["Alpha beta gamma.", "Delta epsilon. Zeta eta theta."]


def test_split_text_rejects_a_limit_below_one() -> None:
    with pytest.raises(BadRequest, match="0"):
        split_text("x", 0)


# -- pages ------------------------------------------------------------------------------------------


def _check_pages(pages: list[Page], limit: int, title: str) -> None:
    assert pages, "a paginated view always has a page"
    assert all(len(p.body) <= limit for p in pages)
    assert [p.index for p in pages] == list(range(len(pages)))
    assert {p.total for p in pages} == {len(pages)}
    assert {p.title for p in pages} == {title}


def test_discussion_pages_show_round_speaker_and_fallback(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    pages = discussion_pages(report(doc), personas, page_chars=4096)
    assert len(pages) == 1
    assert pages[0].label == "Discussion (1/1)"
    body = pages[0].body
    assert "Round 1 · 📊 Analyst\nThe data on four-day weeks is mixed." in body
    assert "Round 2 · 🔍 Skeptic (⚠ fallback)\n(no reply: timeout)" in body


@pytest.mark.parametrize("limit", [60, 200, 1024])
def test_discussion_pages_keep_all_content_within_limit(
    doc: dict[str, Any], personas: dict[str, Persona], limit: int
) -> None:
    """Pages fit the limit and, read in order, give back every word of the transcript, none split."""
    doc["transcript"][0]["content"] = LONG_TEXT
    pages = discussion_pages(report(doc), personas, page_chars=limit)
    _check_pages(pages, limit, "Discussion")
    assert len(pages) > 1
    expected: list[str] = []
    for entry in doc["transcript"]:
        persona = personas[entry["agent"]]
        mark = " (⚠ fallback)" if entry["fallback"] else ""
        head = f"Round {entry['round']} · {persona.emoji} {persona.name}{mark}"
        expected += [*_words(head), *_words(entry["content"])]
    assert _words(" ".join(p.body for p in pages)) == expected


def test_six_long_proposals_paginate_into_several_pages(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    """Long proposals spread over pages under the limit, in ranking order, with no word lost or split."""
    doc["proposals"] = [_proposal(f"P{i}", f"Option {i}", (SENTENCE * 12).strip()) for i in range(1, 6)] + [
        {**_proposal("P5", "Extra", (SENTENCE * 30).strip()), "id": "P6"}
    ]
    pages = proposal_pages(report(doc), personas, page_chars=1024)
    _check_pages(pages, 1024, "Proposals")
    assert len(pages) >= 4
    whole = proposal_pages(report(doc), personas, page_chars=100_000)
    assert len(whole) == 1
    text = " ".join(p.body for p in pages)
    assert _words(text) == _words(whole[0].body)
    assert text.startswith("🏆 P2 · Option 2\nby 💡 Creative · score 12")
    assert re.findall(r"\bP\d\b(?= ·)", text) == ["P2", "P4", "P1", "P3", "P5", "P6"]
    # A proposal that fits on a page is never torn across two.
    assert sum(body.count("Option 4") for body in (p.body for p in pages)) == 2  # title and benefit
    assert any("P4 · Option 4" in p.body and "Steps:" in p.body.split("P4 · Option 4")[1] for p in pages)


def test_proposal_pages_show_everything_for_each_proposal(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    pages = proposal_pages(report(doc), personas, page_chars=3000)
    body = "\n\n".join(p.body for p in pages)
    assert "P4 · Flexible Fridays\nby 🔧 Pragmatist · score 10" in body
    assert "Benefits:\n• Flexible Fridays is cheap to try\n• it can be reversed" in body
    assert "Steps:\n1. agree an owner\n2. run a two-week pilot\n3. review the numbers" in body


def test_empty_session_still_has_one_page(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    doc["transcript"], doc["proposals"] = [], []
    assert [p.body for p in discussion_pages(report(doc), personas, page_chars=100)] == [
        "No discussion took place."
    ]
    assert [p.body for p in proposal_pages(report(doc), personas, page_chars=100)] == [
        "No proposal was made."
    ]


# -- statistics -------------------------------------------------------------------------------------


def test_statistics_count_turns_words_and_usage(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    stats = {a.agent.id: a for a in statistics_view(report(doc), personas).agents}
    assert list(stats) == TEAM
    assert (stats["analyst"].turns, stats["analyst"].fallbacks, stats["analyst"].words) == (2, 0, 15)
    assert (stats["skeptic"].turns, stats["skeptic"].fallbacks, stats["skeptic"].words) == (2, 1, 5)
    assert stats["pragmatist"].words == 8 + 3
    assert stats["ethicist"].usage is not None
    assert stats["ethicist"].usage.tokens == 550
    assert stats["analyst"].mean_latency_ms is None
    view = statistics_view(report(doc), personas)
    assert (view.total_turns, view.total_words) == (10, sum(a.words for a in view.agents))


def test_statistics_render_votes_and_mark_invalid(doc: dict[str, Any], personas: dict[str, Persona]) -> None:
    votes = {a.agent.id: a.vote for a in statistics_view(report(doc), personas).agents}
    assert votes["analyst"].status == "voted"
    assert votes["analyst"].text == "ranked P2 > P4 > P1 > P3 > P5"
    assert votes["ethicist"].status == "invalid"
    assert votes["ethicist"].reason == "repeated candidate 'P2'"
    assert votes["ethicist"].text == "invalid (repeated candidate 'P2'): ranked P2 > P2 > P1"


@pytest.mark.parametrize(
    ("ballot", "status", "text"),
    [
        ({"voter": "analyst", "choice": "P3"}, "voted", "chose P3"),
        ({"voter": "analyst", "ratings": {"P2": 5, "P1": 4}}, "voted", "rated P1 4, P2 5"),
        ({"voter": "analyst", "approve": ["P1", "P3"]}, "voted", "approved P1, P3"),
        ({"voter": "analyst", "approve": []}, "voted", "approved none"),
        ({"voter": "analyst", "abstain": True}, "abstained", "abstained"),
        (None, "missing", "did not vote"),
    ],
)
def test_statistics_render_every_ballot_shape(
    doc: dict[str, Any], personas: dict[str, Persona], ballot: dict[str, Any] | None, status: str, text: str
) -> None:
    doc["ballots"] = [ballot] if ballot else []
    vote = statistics_view(report(doc), personas).agents[0].vote
    assert (vote.status, vote.text) == (status, text)


def test_statistics_average_latency_when_the_document_has_it(
    doc: dict[str, Any], personas: dict[str, Persona]
) -> None:
    doc["transcript"][0]["latency_ms"] = 800.0
    doc["transcript"][5]["latency_ms"] = 1200.0
    stats = statistics_view(report(doc), personas).agents
    assert stats[0].mean_latency_ms == 1000.0
    assert stats[1].mean_latency_ms is None


# -- progress ---------------------------------------------------------------------------------------


def _event(kind: str, **fields: Any) -> Progress:
    return Progress.model_validate({"kind": kind, "session_id": "s-123", **fields})


def test_progress_tracker_follows_a_step(personas: dict[str, Persona]) -> None:
    """step_started sets everyone typing; turns mark spoken or failed; step_completed adds a note."""
    tracker = ProgressTracker(TEAM, personas, rounds_planned=3)
    view = tracker.update(_event("session_started", detail="topic"))
    assert view.title == "Starting"
    assert {a.status for a in view.agents} == {"waiting"}

    view = tracker.update(
        _event("step_started", step="round-2", phase="discussion", round=2, pending=TEAM, elapsed_s=3.0)
    )
    assert view.title == "Discussion round 2 of 3"
    assert view.round == 2
    assert [a.status_text for a in view.agents] == ["typing…"] * 5
    assert view.agents[0].agent.label == "📊 Analyst"

    view = tracker.update(
        _event("turn_completed", step="round-2", round=2, agent="creative", detail="pilot it", elapsed_s=4.5)
    )
    view = tracker.update(
        _event("turn_completed", step="round-2", round=2, agent="skeptic", fallback=True, detail="timeout")
    )
    status = {a.agent.id: (a.status, a.detail) for a in view.agents}
    assert status["creative"] == ("spoken", "pilot it")
    assert status["skeptic"] == ("failed", "timeout")
    assert status["analyst"] == ("typing", None)
    assert view.elapsed_s == 4.5

    view = tracker.update(
        _event("step_completed", step="round-2", round=2, detail="every agent was ready", elapsed_s=9.0)
    )
    assert view.notes == ["Discussion round 2 of 3: every agent was ready"]
    assert view.elapsed_s == 9.0


@pytest.mark.parametrize(
    ("step", "phase", "title"),
    [("proposals", "proposal", "Proposals"), ("votes", "vote", "Voting"), ("round-1", "discussion", None)],
)
def test_progress_titles_name_the_phase(
    personas: dict[str, Persona], step: str, phase: str, title: str | None
) -> None:
    tracker = ProgressTracker(TEAM, personas, rounds_planned=2)
    round_no = 1 if step == "round-1" else None
    view = tracker.update(_event("step_started", step=step, phase=phase, round=round_no, pending=TEAM))
    assert view.title == (title or "Discussion round 1 of 2")


def test_progress_marks_agents_done_before_a_resume_as_spoken(personas: dict[str, Persona]) -> None:
    """On resume, agents missing from `pending` already had their turn."""
    tracker = ProgressTracker(TEAM, personas, rounds_planned=3)
    view = tracker.update(_event("step_started", step="votes", phase="vote", pending=["skeptic"]))
    assert [a.status for a in view.agents] == ["spoken", "spoken", "typing", "spoken", "spoken"]


def test_progress_finishes_with_the_summary(personas: dict[str, Persona]) -> None:
    tracker = ProgressTracker(TEAM, personas, rounds_planned=3)
    view = tracker.update(_event("session_completed", detail="P2 wins", elapsed_s=40.0))
    assert view.finished
    assert view.title == "Finished"
    assert view.summary == "P2 wins"
