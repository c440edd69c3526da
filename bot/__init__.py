"""The platform-neutral application layer: what every front end calls."""

from bot.request import SessionRequest, parse_rounds, require_rule
from bot.runner import SessionRunner
from bot.runtime import Runtime
from bot.settings import Settings
from bot.tally import tally_lines, tally_text
from engine.errors import (
    BadRequest,
    ConfigError,
    InvalidArgument,
    RoundTableError,
    RuleMismatch,
    SessionNotFound,
)
from engine.progress import Progress
from engine.report import SessionReport
from engine.rules import VOTING_RULES

__all__ = [
    "VOTING_RULES",
    "BadRequest",
    "ConfigError",
    "InvalidArgument",
    "Progress",
    "RoundTableError",
    "RuleMismatch",
    "Runtime",
    "SessionNotFound",
    "SessionReport",
    "SessionRequest",
    "SessionRunner",
    "Settings",
    "parse_rounds",
    "require_rule",
    "tally_lines",
    "tally_text",
]
