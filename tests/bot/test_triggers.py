"""Automatic triggers: tables of messages that must fire (and which rule), and messages that must not."""

from __future__ import annotations

import pytest

from bot.triggers import TRIGGER_RULES, TriggerMatch, normalize, should_trigger


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        # English phrases
        ("What are the pros and cons of remote work", "pros_and_cons"),
        ("PROS AND CONS please", "pros_and_cons"),
        ("I have a dilemma at work", "dilemma"),
        ("So many dilemmas lately", "dilemma"),
        ("I'd like multiple opinions on this", "multiple_opinions"),
        ("What is the trade-off here", "trade_off"),
        ("The tradeoff is speed", "trade_off"),
        ("Big trade offs everywhere", "trade_off"),
        ("the trade-offs matter", "trade_off"),
        # Portuguese phrases, with and without accents
        ("Quais são os prós e contras disso", "pros_e_contras"),
        ("quais os PROS E CONTRAS", "pros_e_contras"),
        ("Estou num dilema", "dilema"),
        ("Quero opiniões sobre isso", "opinioes"),
        ("quero opinioes sobre isso", "opinioes"),
        ("Preciso de um conselho", "conselho"),
        ("Preciso de conselhos", "conselho"),
        # a choice offered in a question
        ("Should I use Postgres or MySQL?", "either_or"),
        ("Tabs or spaces?", "either_or"),
        ("Python 3.11 or 3.12?", "either_or"),
        ("Thanks. Rust or Go for the CLI?", "either_or"),
        ("Devo usar Postgres ou MySQL?", "ou"),
        ("Café ou chá?", "ou"),
        # a comparison, question or not
        ("Postgres vs MySQL", "versus"),
        ("postgres vs. mysql for analytics", "versus"),
        ("Vim versus Emacs", "versus"),
        ("React VS Vue?", "versus"),
        # a long question
        (
            "Hello team, "
            + "we have been thinking about the roadmap for the next quarter " * 3
            + "- thoughts?",
            "long_question",
        ),
    ],
)
def test_messages_that_fire_and_the_rule_that_fires(text: str, rule: str) -> None:
    match = should_trigger(text)
    assert match is not None, text
    assert match.rule == rule


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello everyone",
        "Can you order pizza?",
        "What color is the sky?",
        "Where is the doctor?",
        "Put it on the canvas vs",  # nothing after `vs`
        "The canvas is nice",
        "vsync is off",
        "Or maybe not?",
        "Postgres or MySQL. Anyway, lunch.",  # a choice, but not asked
        "Do you like it?",
        "Você sabe onde fica?",
        "Outro dia, outra coisa?",
        "Consolidated opinion",
        "Eu sou um conselheiro",
        "The dilemmatic word is made up",
        "trader offers",
        "x" * 200,  # long, but not a question
        "short question?",
    ],
)
def test_messages_that_do_not_fire(text: str) -> None:
    assert should_trigger(text) is None


def test_the_long_question_threshold_is_an_option() -> None:
    question = "What should the team do about the flaky deploys this week?"
    assert should_trigger(question) is None
    assert should_trigger(question, min_question_chars=len(question) - 1) == TriggerMatch(
        rule="long_question", kind="long_question", matched=question[:40]
    )
    assert should_trigger(question, min_question_chars=len(question)) is None


def test_a_phrase_rule_wins_over_a_choice_in_the_same_message() -> None:
    match = should_trigger("Pros and cons of Postgres vs MySQL?")
    assert match == TriggerMatch(rule="pros_and_cons", kind="phrase", matched="pros and cons")


def test_the_match_reports_the_words_it_fired_on_normalized() -> None:
    match = should_trigger("Quais são os PRÓS E CONTRAS?")
    assert match is not None
    assert match.matched == "pros e contras"


def test_normalize_drops_accents_and_case_and_straightens_apostrophes() -> None:
    assert normalize("Opiniões PRÓS Conselho’s") == "opinioes pros conselho's"


def test_every_rule_is_named_once_and_covers_both_languages() -> None:
    names = [rule.name for rule in TRIGGER_RULES]
    assert len(names) == len(set(names))
    assert {rule.language for rule in TRIGGER_RULES} == {"en", "pt"}
