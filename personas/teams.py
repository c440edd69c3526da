"""Named teams, and turning a team spec (`full`, `analyst, skeptic`) into personas.

A spec is either one team name or a comma-separated list of persona ids, never a mix: a comma list is
read as ids only, so a user persona can never be shadowed by a team of the same name (the loader also
refuses persona ids that are team names).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Final

from personas.model import PERSONA_ID_PATTERN, Persona

#: Team name -> persona ids, in speaking order. `full` is `default` plus the summarizer.
TEAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "default": ("analyst", "creative", "skeptic", "pragmatist", "ethicist"),
    "full": ("analyst", "creative", "skeptic", "pragmatist", "ethicist", "summarizer"),
    "compact": ("analyst", "creative", "pragmatist"),
}

_PERSONA_ID: Final = re.compile(PERSONA_ID_PATTERN)

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
    return [personas[persona_id] for persona_id in team_ids(spec, personas)]


def team_ids(spec: str, known: Collection[str] | None) -> list[str]:
    """The persona ids a team spec names, checked: the one place that reads team specs.

    With `known=None` (no persona set at hand, as when a chat command is parsed) only the shape is
    checked: well-formed ids, no team inside a list, no repeats, enough members; a single name that is
    not a team is then an unknown team.

    Raises:
        UnknownPersonaError, TeamError: as `resolve_team`.
    """
    text = spec.strip().lower()
    where = choices(known)
    team = text if "," not in text and text in TEAMS else None
    ids = list(TEAMS[team]) if team else [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise TeamError(f"the team is empty; {where}")
    if known is None and team is None and "," not in text:
        raise UnknownPersonaError(f"unknown team '{text}'{_hint(text, ())}; {where}")
    for persona_id in ids:
        if known is not None:
            unknown = persona_id not in known
        else:
            unknown = persona_id in TEAMS or not _PERSONA_ID.fullmatch(persona_id)
        if unknown:
            raise UnknownPersonaError(f"{_unknown(persona_id, team, len(ids), known or ())}; {where}")
    duplicates = sorted({persona_id for persona_id in ids if ids.count(persona_id) > 1})
    if duplicates:
        named = ", ".join(f"'{persona_id}'" for persona_id in duplicates)
        raise TeamError(f"the team names {named} more than once; name each persona once; {where}")
    if len(ids) < MIN_TEAM_SIZE:
        raise TeamError(f"a team needs at least {MIN_TEAM_SIZE} personas, got '{text}'; {where}")
    return ids


def choices(known: Collection[str] | None) -> str:
    """The valid choices, for error messages: `choose from <ids>, or a team: <teams>`."""
    if known is None:
        return f"choose a team ({', '.join(TEAMS)}) or {MIN_TEAM_SIZE}+ persona ids such as analyst,skeptic"
    return f"choose from {', '.join(sorted(known))}, or a team: {', '.join(TEAMS)}"


def _unknown(persona_id: str, team: str | None, size: int, known: Collection[str]) -> str:
    """Why `persona_id` cannot be resolved, with a close match when a typo is likely."""
    if team is not None:
        return f"team '{team}' needs persona '{persona_id}', which is not defined"
    if persona_id in TEAMS:
        return f"'{persona_id}' is a team, not a persona; name a team alone or list persona ids"
    what = "team or persona" if size == 1 else "persona"
    return f"unknown {what} '{persona_id}'{_hint(persona_id, known)}"


def _hint(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, [*known, *TEAMS], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
