"""The chat command grammar: tables of commands and what each parses to."""

from __future__ import annotations

from typing import Any

import pytest

from bot.grammar import Invalid, Run, Usage, parse_command, usage
from bot.request import SessionRequest

PERSONAS = ["analyst", "creative", "skeptic", "pragmatist", "ethicist", "summarizer"]


def run(text: str, **kwargs: Any) -> SessionRequest:
    command = parse_command(text, **kwargs)
    assert isinstance(command, Run), command
    return command.request


def invalid(text: str, **kwargs: Any) -> str:
    command = parse_command(text, **kwargs)
    assert isinstance(command, Invalid), command
    assert "\n" not in command.message
    return command.message


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "",
        "!roundtables are fun",
        "please !roundtable this",
        "!round table",
    ],
)
def test_text_that_is_not_the_command_gives_none(text: str) -> None:
    assert parse_command(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!roundtable Should we adopt Rust?", {"topic": "Should we adopt Rust?"}),
        ("!roundtable Rust? --rounds 2", {"topic": "Rust?", "rounds": 2}),
        ("!roundtable --rounds 2 Rust?", {"topic": "Rust?", "rounds": 2}),
        ("!roundtable Rust --rounds=4 now", {"topic": "Rust now", "rounds": 4}),
        ("!roundtable Rust --voting RANKED", {"topic": "Rust", "voting": "ranked"}),
        ("!roundtable Rust --voting=condorcet", {"topic": "Rust", "voting": "condorcet"}),
        ("!roundtable Rust --team full", {"topic": "Rust", "team": "full"}),
        ("!roundtable Rust --team Analyst,SKEPTIC", {"topic": "Rust", "team": "analyst,skeptic"}),
        ('!roundtable Rust --team "analyst, skeptic"', {"topic": "Rust", "team": "analyst,skeptic"}),
        (
            '!roundtable --voting approval "Postgres or MySQL?" --team compact --rounds 1',
            {"topic": "Postgres or MySQL?", "voting": "approval", "team": "compact", "rounds": 1},
        ),
        ("!roundtable 'single quoted topic'", {"topic": "single quoted topic"}),
        ("!roundtable “curly quoted” --rounds 3", {"topic": "curly quoted", "rounds": 3}),
        ("!roundtable What's the best DB? It's urgent", {"topic": "What's the best DB? It's urgent"}),
        ("!roundtable 'it's fine'", {"topic": "it's fine"}),
        ("!roundtable #1 priority: C:\\temp", {"topic": "#1 priority: C:\\temp"}),
        ("!roundtable Rust —rounds 2", {"topic": "Rust", "rounds": 2}),
        ("!roundtable —well, Rust?", {"topic": "—well, Rust?"}),
        ("!roundtable -5 degrees: heat or not?", {"topic": "-5 degrees: heat or not?"}),
        (
            "!roundtable --rounds 2 -- --rounds is a word here",
            {"topic": "--rounds is a word here", "rounds": 2},
        ),
        ("!RoundTable   spaced   out  ", {"topic": "spaced out"}),
        ("!roundtable\nmulti\nline", {"topic": "multi line"}),
    ],
)
def test_valid_commands_parse_into_a_request(text: str, expected: dict[str, Any]) -> None:
    assert run(text) == SessionRequest(**expected)


@pytest.mark.parametrize(
    "text",
    [
        "!roundtable",
        "!roundtable   ",
        "!roundtable --help",
        "!roundtable Rust --help",
        "!roundtable -h",
        "!roundtable --HELP",
    ],
)
def test_help_and_the_bare_command_give_the_usage_text(text: str) -> None:
    assert parse_command(text) == Usage(text=usage())


def test_the_usage_text_names_the_prefix_and_every_choice() -> None:
    command = parse_command("?rt", prefix="?rt")
    assert isinstance(command, Usage)
    assert command.text.startswith("usage: ?rt <topic>")
    for word in ["1-5", "majority", "rated", "ranked", "unanimity", "approval", "condorcet", "compact"]:
        assert word in command.text


def test_a_custom_prefix_is_matched_as_a_whole_word() -> None:
    assert run("/deliberate Rust?", prefix="/deliberate").topic == "Rust?"
    assert parse_command("/deliberately so", prefix="/deliberate") is None
    assert parse_command("!roundtable Rust", prefix="/deliberate") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "!roundtable Rust --voting rnaked",
            "unknown voting rule 'rnaked'; "
            "choose one of majority, rated, ranked, unanimity, approval, condorcet",
        ),
        ("!roundtable Rust --rounds 7", "--rounds 7 is out of range; choose 1-5"),
        ("!roundtable Rust --rounds 0", "--rounds 0 is out of range; choose 1-5"),
        ("!roundtable Rust --rounds three", "--rounds 'three' is not a number; choose 1-5"),
        ("!roundtable Rust --rounds", "--rounds needs a value; choose 1-5"),
        ("!roundtable Rust --rounds --voting ranked", "--rounds needs a value; choose 1-5"),
        (
            "!roundtable Rust --voting",
            "--voting needs a value; choose one of majority, rated, ranked, unanimity, approval, condorcet",
        ),
        (
            '!roundtable Rust --voting ""',
            "--voting is empty; choose one of majority, rated, ranked, unanimity, approval, condorcet",
        ),
        (
            "!roundtable Rust --voting=",
            "--voting is empty; choose one of majority, rated, ranked, unanimity, approval, condorcet",
        ),
        ("!roundtable Rust --rounds 2 --rounds=3", "--rounds is given twice; give it once"),
        (
            "!roundtable Rust --rouns 2",
            "unknown option '--rouns' (did you mean '--rounds'?); "
            "choose one of --rounds, --voting, --team, --help",
        ),
        (
            "!roundtable Rust --model gpt",
            "unknown option '--model'; choose one of --rounds, --voting, --team, --help",
        ),
        (
            "!roundtable --rounds 2",
            "the topic is empty; say what the team should deliberate after the command",
        ),
        (
            '!roundtable "" --rounds 2',
            "the topic is empty; say what the team should deliberate after the command",
        ),
        (
            '!roundtable "Rust or Go',
            "a quote (' or \") is left open; close it, or write the topic without quotes",
        ),
        (
            "!roundtable the users' choice",
            "a quote (' or \") is left open; close it, or write the topic without quotes",
        ),
    ],
)
def test_bad_commands_give_a_one_line_error_naming_the_valid_values(text: str, message: str) -> None:
    assert invalid(text) == message


def test_a_topic_over_the_limit_is_refused_with_its_length() -> None:
    assert invalid("!roundtable " + "x" * 4001) == "the topic is 4001 characters; the limit is 4000"


@pytest.mark.parametrize(
    ("team", "fragment"),
    [
        ("fulll", "unknown team 'fulll' (did you mean 'full'?)"),
        ("analyst", "unknown team 'analyst'"),
        ("analyst,analyst", "the team names 'analyst' more than once"),
        ("analyst,", "a team needs at least 2 personas, got 'analyst,'"),
        ("full,analyst", "'full' is a team, not a persona"),
        ('"analyst,Not An Id"', "unknown persona 'not an id'"),
        ('" "', "--team is empty"),
    ],
)
def test_team_shape_is_checked_without_a_persona_set(team: str, fragment: str) -> None:
    message = invalid(f"!roundtable Rust --team {team}")
    assert message.startswith(fragment)
    assert message.endswith(
        "choose a team (default, full, compact) or 2+ persona ids such as analyst,skeptic"
    )


def test_any_well_formed_id_list_passes_without_a_persona_set() -> None:
    assert run("!roundtable Rust --team analyst,my-own_persona").team == "analyst,my-own_persona"


@pytest.mark.parametrize(
    ("team", "fragment"),
    [
        ("analyst,skeptc", "unknown persona 'skeptc' (did you mean 'skeptic'?)"),
        ("analyst,mystery", "unknown persona 'mystery'"),
        ("analyst", "a team needs at least 2 personas, got 'analyst'"),
        ("fulll", "unknown team or persona 'fulll' (did you mean 'full'?)"),
    ],
)
def test_team_is_checked_against_the_persona_set_when_given(team: str, fragment: str) -> None:
    message = invalid(f"!roundtable Rust --team {team}", personas=PERSONAS)
    assert message.startswith(fragment)
    assert message.endswith(
        "choose from analyst, creative, ethicist, pragmatist, skeptic, summarizer, "
        "or a team: default, full, compact"
    )


def test_a_named_team_needs_its_members_in_the_persona_set() -> None:
    without_summarizer = PERSONAS[:-1]
    assert run("!roundtable Rust --team default", personas=without_summarizer).team == "default"
    assert invalid("!roundtable Rust --team full", personas=without_summarizer).startswith(
        "team 'full' needs persona 'summarizer', which is not defined;"
    )


def test_known_persona_ids_pass_when_a_persona_set_is_given() -> None:
    assert run("!roundtable Rust --team Skeptic,ethicist", personas=PERSONAS).team == "skeptic,ethicist"
