"""Team suggestion: the shape of a topic picks the base team, keywords add the voices it needs."""

from __future__ import annotations

import pytest

from personas import PERSONA_RULES, SHAPE_RULES, TEAMS, load_personas, resolve_team, suggest, suggest_team
from personas.suggest import LONG_WORDS, SHORT_WORDS

LONG_TOPIC = " ".join(["We are weighing how to organise the platform team next year."] * 6)
ENUMERATED = "Plan the offsite:\n1. where should we go\n2. how long should it last"
INLINE_ITEMS = "Decide (a) the venue and (b) the date for the offsite."


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        # shape: short either/or -> compact
        ("Tabs or spaces?", "compact"),
        ("Monolith or microservices for a two-person team?", "compact"),
        ("Postgres vs MySQL for the new service?", "compact"),
        ("React versus Vue", "compact"),
        # shape: neither short either/or nor long nor multi-part -> default
        ("Should a five-person startup adopt a four-day work week?", "default"),
        ("How should we price the new plan?", "default"),
        ("", "default"),
        # shape: long or multi-part -> full
        (LONG_TOPIC, "full"),
        ("Should we open an office in Lisbon? Who would move there?", "full"),
        (ENUMERATED, "full"),
        (INLINE_ITEMS, "full"),
        # keywords add a persona missing from the base team, in the full team's order
        ("Should we store passwords hashed or encrypted?", "analyst,creative,skeptic,pragmatist"),
        ("Is scraping profiles fair or not?", "analyst,creative,pragmatist,ethicist"),
        # compact + skeptic + ethicist is exactly the default team, so it is named
        ("Privacy-first analytics or cheaper tracking with more risk?", "default"),
        ("Summarize: monorepo or polyrepo?", "analyst,creative,pragmatist,summarizer"),
        # default + summarizer is exactly the full team, so it is named
        ("Give us an overview of the options for hosting the wiki", "full"),
        # keywords for personas already present change nothing
        ("Is it ethical to use customer data to train our model?", "default"),
        ("What are the security risks of our current deploy process?", "default"),
    ],
)
def test_suggestion_table(topic: str, expected: str) -> None:
    assert suggest_team(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "Should the risotto be the special or the pasta?",  # "risotto" is not "risk*"
        "Rust or Go, given the team is fairly small?",  # "fairly" is not "fair"
        "Hire for the audition panel or train staff?",  # "audition" is not "audit"
        "Does team morale improve with a 9-to-5 or flexible hours?",  # "morale" is not "moral"
        "Scampi or salmon for the launch dinner?",  # "scampi" is not "scam"
        "Should the hackathon be on Friday or Saturday?",  # "hackathon" is not "hack"
        "Copyrights or trademarks first?",  # "copyrights" is not "rights"
    ],
)
def test_lookalike_words_trigger_no_persona(topic: str) -> None:
    """Keywords match whole words or declared prefixes, so these stay the compact team."""
    assert suggest_team(topic) == "compact"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (" ".join(["word"] * (SHORT_WORDS - 2)) + " or not", "compact"),
        (" ".join(["word"] * (SHORT_WORDS - 1)) + " or not", "default"),
        (" ".join(["word"] * (LONG_WORDS - 1)), "default"),
        (" ".join(["word"] * LONG_WORDS), "full"),
        ("Which one? ", "default"),
        ("Which one??? Really", "default"),
        ("Is it x?! Or y?", "full"),
    ],
)
def test_shape_thresholds(topic: str, expected: str) -> None:
    """The edges of the word limits, and question marks counted once per run."""
    assert suggest_team(topic) == expected


def test_reasons_name_the_rules_that_fired() -> None:
    suggestion = suggest("Should we store passwords hashed or encrypted?")
    assert [reason.split(":")[0] for reason in suggestion.reasons] == ["either/or", "risk"]


def test_no_rule_fired_gives_default_with_no_reasons() -> None:
    suggestion = suggest("Should a five-person startup adopt a four-day work week?")
    assert (suggestion.team, suggestion.reasons) == ("default", ())


@pytest.mark.parametrize(
    "topic",
    [
        "Tabs or spaces?",
        "Is scraping profiles fair or not? Summarize the risks.",
        "Privacy-first analytics or cheaper tracking with more risk?",
        LONG_TOPIC,
        "",
    ],
)
def test_every_suggestion_resolves_with_the_built_ins(topic: str) -> None:
    assert len(resolve_team(suggest_team(topic), load_personas())) >= 2


def test_rule_tables_name_only_real_teams_and_personas() -> None:
    """A typo in a rule table would otherwise only show when a topic happens to trigger it."""
    assert {rule.team for rule in SHAPE_RULES} <= set(TEAMS)
    assert {rule.persona for rule in PERSONA_RULES} <= set(TEAMS["full"])
    for rule in PERSONA_RULES:
        assert rule.keywords
        assert all(k == k.strip().lower() and k.rstrip("*").replace(" ", "").isalnum() for k in rule.keywords)


def test_suggest_is_pure() -> None:
    topic = "Is scraping profiles fair or not?"
    assert suggest(topic) == suggest(topic)
