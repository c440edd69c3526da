"""A request for a deliberation, as any front end states it, validated into a session config."""

from __future__ import annotations

import secrets

from pydantic import BaseModel, ValidationError

from bot.settings import Settings
from engine.config import MAX_ROUNDS, Limits, SessionConfig
from engine.errors import BadRequest, UnknownPersona
from engine.rules import VOTING_RULES
from personas import Persona, resolve_team
from personas.teams import choices as team_choices


class SessionRequest(BaseModel):
    topic: str
    rounds: int | None = None
    voting: str | None = None
    team: str | None = None
    early_stop: bool = True
    seed: int | None = None
    model: str | None = None


def parse_rounds(value: str) -> int:
    """The `--rounds` value as typed, as a number of rounds. Raises `BadRequest` naming the range."""
    try:
        rounds = int(value.strip())
    except ValueError:
        raise BadRequest(f"--rounds '{value}' is not a number; choose 1-{MAX_ROUNDS}") from None
    if not 1 <= rounds <= MAX_ROUNDS:
        raise BadRequest(f"--rounds {rounds} is out of range; choose 1-{MAX_ROUNDS}")
    return rounds


def require_rule(value: str | None) -> str:
    """A `--voting` value that must be given (`retally`). Raises `BadRequest` listing the rules."""
    if value is None:
        raise BadRequest(f"--voting is required; choose one of {', '.join(VOTING_RULES)}")
    return value


def new_session_id() -> str:
    return secrets.token_hex(6)


def build_config(request: SessionRequest, settings: Settings, personas: dict[str, Persona]) -> SessionConfig:
    """Validate a request against the settings. Raises `BadRequest` with a one-line reason."""
    rounds = request.rounds if request.rounds is not None else settings.rounds
    if not 1 <= rounds <= MAX_ROUNDS:
        raise BadRequest(f"--rounds {rounds} is out of range; choose 1-{MAX_ROUNDS}")
    # `is None`, not falsiness: an empty --voting or --team is a mistake to report, not a default.
    rule = (request.voting if request.voting is not None else settings.voting).strip().lower()
    if not rule:
        raise BadRequest(f"--voting is empty; choose one of {', '.join(VOTING_RULES)}")
    if rule not in VOTING_RULES:
        raise BadRequest(f"unknown voting rule '{rule}'; choose one of {', '.join(VOTING_RULES)}")
    spec = request.team if request.team is not None else settings.team
    if not spec.strip():
        raise BadRequest(f"--team is empty; {team_choices(personas)}")
    try:
        team = resolve_team(spec, personas)
    except ValueError as exc:
        raise UnknownPersona(str(exc)) from None
    try:
        return SessionConfig(
            topic=request.topic,
            rounds=rounds,
            voting_rule=rule,
            team=[p.id for p in team],
            early_stop=request.early_stop,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            model=request.model or settings.model,
            agent_models={**{p.id: p.model for p in team if p.model}, **settings.agent_models},
            limits=Limits(
                turn_timeout_s=settings.turn_timeout_s,
                session_deadline_s=settings.session_deadline_s,
                budget_tokens=settings.budget_tokens,
                budget_usd=settings.budget_usd,
            ),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str(err.get("ctx", {}).get("error") or err["msg"])
        raise BadRequest(message.removeprefix("Value error, ")) from None
