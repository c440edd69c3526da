"""Named teams, and turning a team spec (`full`, `analyst, skeptic`) into personas.

A spec is either one team name or a comma-separated list of persona ids, never a mix: a comma list is
read as ids only, so a user persona can never be shadowed by a team of the same name (the loader also
refuses persona ids that are team names).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Final

from personas.model import Persona

#: Team name -> persona ids, in speaking order. `full` is `default` plus the summarizer.
TEAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "default": ("analyst", "creative", "skeptic", "pragmatist", "ethicist"),
    "full": ("analyst", "creative", "skeptic", "pragmatist", "ethicist", "summarizer"),
    "compact": ("analyst", "creative", "pragmatist"),
}

#: A deliberation with one voice is not a deliberation.
MIN_TEAM_SIZE: Final = 2


class TeamError(ValueError):
    """A team spec is unusable (empty, a persona twice, too few members). The message lists the choices."""


class UnknownPersonaError(TeamError):
    """A team spec names a persona id or team that is not defined. The message lists the valid ones."""


def resolve_team(spec: str, personas: Mapping[str, Persona]) -> list[Persona]:
    """Turn a team name or a comma-separated list of persona ids into personas, in the order given.

    Case-insensitive and whitespace-tolerant: ` Analyst , SKEPTIC ` is `analyst,skeptic`.

    Args:
        spec: `default`, `full`, `compact`, or ids such as `analyst,skeptic,ethicist`.
        personas: every persona that may be chosen, keyed by id (as `load_personas` returns them).

    Raises:
        UnknownPersonaError: the spec names a team or persona id that does not exist.
        TeamError: the spec is empty, names a persona twice, or has fewer than two members.
    """
    text = spec.strip().lower()
    team = text if "," not in text and text in TEAMS else None
    ids = list(TEAMS[team]) if team else [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise TeamError(f"the team is empty; {choices(personas)}")
    for persona_id in ids:
        if persona_id not in personas:
            raise UnknownPersonaError(
                f"{_unknown(persona_id, team, len(ids), personas)}; {choices(personas)}"
            )
    duplicates = sorted({persona_id for persona_id in ids if ids.count(persona_id) > 1})
    if duplicates:
        named = ", ".join(f"'{persona_id}'" for persona_id in duplicates)
        raise TeamError(f"the team names {named} more than once; name each persona once; {choices(personas)}")
    if len(ids) < MIN_TEAM_SIZE:
        raise TeamError(f"a team needs at least {MIN_TEAM_SIZE} personas, got '{text}'; {choices(personas)}")
    return [personas[persona_id] for persona_id in ids]


def choices(personas: Mapping[str, Persona]) -> str:
    """The valid choices, for error messages: `choose from <ids>, or a team: <teams>`."""
    return f"choose from {', '.join(sorted(personas))}, or a team: {', '.join(TEAMS)}"


def _unknown(persona_id: str, team: str | None, size: int, personas: Mapping[str, Persona]) -> str:
    """Why `persona_id` cannot be resolved, with a close match when a typo is likely."""
    if team is not None:
        return f"team '{team}' needs persona '{persona_id}', which is not defined"
    if persona_id in TEAMS:
        return f"'{persona_id}' is a team, not a persona; name a team alone or list persona ids"
    close = difflib.get_close_matches(persona_id, [*personas, *TEAMS], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    what = "team or persona" if size == 1 else "persona"
    return f"unknown {what} '{persona_id}'{hint}"
