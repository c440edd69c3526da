"""Personas and teams: who deliberates, loaded from data files.

    load_personas(extra_dir) -> {id: Persona}     built-in TOML files, plus a user's folder on top
    resolve_team(spec, personas) -> [Persona]     "default" | "full" | "compact" | "analyst,skeptic"
    suggest_team(topic) -> spec                   a team for a topic, from documented rule tables

This package imports nothing else of RoundTable's, so its errors derive from `ValueError` and the
engine maps them to its own tree:

    ValueError
    ├── PersonaFileError         a persona file (or the personas folder) is unusable
    └── TeamError                a team spec is empty, repeats a persona, or has too few members
        └── UnknownPersonaError  a team spec names a persona or team that is not defined
"""

from __future__ import annotations

from personas.loader import PersonaFileError, load_persona_file, load_personas
from personas.model import PERSONA_ID_PATTERN, Persona
from personas.suggest import PERSONA_RULES, SHAPE_RULES, Suggestion, suggest, suggest_team
from personas.teams import MIN_TEAM_SIZE, TEAMS, TeamError, UnknownPersonaError, resolve_team, team_ids

__all__ = [
    "MIN_TEAM_SIZE",
    "PERSONA_ID_PATTERN",
    "PERSONA_RULES",
    "SHAPE_RULES",
    "TEAMS",
    "Persona",
    "PersonaFileError",
    "Suggestion",
    "TeamError",
    "UnknownPersonaError",
    "load_persona_file",
    "load_personas",
    "resolve_team",
    "suggest",
    "suggest_team",
    "team_ids",
]
