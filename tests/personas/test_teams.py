"""Team specs: named teams, custom lists, and errors that list the valid choices."""

from __future__ import annotations

import pytest

from personas import TEAMS, Persona, TeamError, UnknownPersonaError, load_personas, resolve_team

CHOICES = (
    "choose from analyst, creative, ethicist, pragmatist, skeptic, summarizer, "
    "or a team: default, full, compact"
)


@pytest.fixture(scope="module")
def personas() -> dict[str, Persona]:
    return load_personas()


def ids(team: list[Persona]) -> list[str]:
    return [persona.id for persona in team]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("default", ["analyst", "creative", "skeptic", "pragmatist", "ethicist"]),
        ("full", ["analyst", "creative", "skeptic", "pragmatist", "ethicist", "summarizer"]),
        ("compact", ["analyst", "creative", "pragmatist"]),
        ("  FULL ", ["analyst", "creative", "skeptic", "pragmatist", "ethicist", "summarizer"]),
        ("Compact", ["analyst", "creative", "pragmatist"]),
    ],
)
def test_team_name_resolves_to_its_members_in_order(
    personas: dict[str, Persona], spec: str, expected: list[str]
) -> None:
    assert ids(resolve_team(spec, personas)) == expected


def test_full_is_default_plus_summarizer() -> None:
    assert TEAMS["full"] == (*TEAMS["default"], "summarizer")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("analyst,skeptic", ["analyst", "skeptic"]),
        ("skeptic,analyst", ["skeptic", "analyst"]),
        (" Ethicist ,  SKEPTIC,summarizer ", ["ethicist", "skeptic", "summarizer"]),
        ("analyst, skeptic,", ["analyst", "skeptic"]),
        ("analyst,,creative", ["analyst", "creative"]),
    ],
)
def test_custom_list_keeps_the_given_order_and_tolerates_case_and_spaces(
    personas: dict[str, Persona], spec: str, expected: list[str]
) -> None:
    assert ids(resolve_team(spec, personas)) == expected


def test_resolved_members_are_the_loaded_personas(personas: dict[str, Persona]) -> None:
    team = resolve_team("analyst,skeptic", personas)
    assert team[0] is personas["analyst"]
    assert team[1].emoji == "🔍"


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            "analyst,skeptik",
            UnknownPersonaError,
            f"unknown persona 'skeptik' (did you mean 'skeptic'?); {CHOICES}",
        ),
        (
            "skeptik",
            UnknownPersonaError,
            f"unknown team or persona 'skeptik' (did you mean 'skeptic'?); {CHOICES}",
        ),
        ("fulll", UnknownPersonaError, f"unknown team or persona 'fulll' (did you mean 'full'?); {CHOICES}"),
        ("analyst,zzz", UnknownPersonaError, f"unknown persona 'zzz'; {CHOICES}"),
        (
            "compact,skeptic",
            UnknownPersonaError,
            f"'compact' is a team, not a persona; name a team alone or list persona ids; {CHOICES}",
        ),
        ("", TeamError, f"the team is empty; {CHOICES}"),
        (" , ,", TeamError, f"the team is empty; {CHOICES}"),
        ("analyst", TeamError, f"a team needs at least 2 personas, got 'analyst'; {CHOICES}"),
        (
            "analyst,skeptic,Analyst",
            TeamError,
            f"the team names 'analyst' more than once; name each persona once; {CHOICES}",
        ),
    ],
)
def test_bad_spec_raises_one_line_listing_the_choices(
    personas: dict[str, Persona], spec: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        resolve_team(spec, personas)
    assert str(caught.value) == message


def test_team_needing_an_undefined_persona_names_it(personas: dict[str, Persona]) -> None:
    without = {pid: p for pid, p in personas.items() if pid != "summarizer"}
    with pytest.raises(
        UnknownPersonaError, match=r"^team 'full' needs persona 'summarizer', which is not defined"
    ):
        resolve_team("full", without)


def test_choices_follow_the_personas_given(personas: dict[str, Persona]) -> None:
    """A user persona appears in the list of choices once it is loaded."""
    extra = {**personas, "historian": personas["analyst"].model_copy(update={"id": "historian"})}
    with pytest.raises(UnknownPersonaError, match=r"ethicist, historian, pragmatist"):
        resolve_team("analyst,nobody", extra)
    assert ids(resolve_team("historian,skeptic", extra)) == ["historian", "skeptic"]


def test_team_errors_are_value_errors() -> None:
    """The engine maps `ValueError`s from this package to `UnknownPersona`; these must be ones."""
    assert issubclass(UnknownPersonaError, TeamError)
    assert issubclass(TeamError, ValueError)
