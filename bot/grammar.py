"""The chat command grammar: `!roundtable <topic> [--rounds N] [--voting RULE] [--team SPEC]`.

`parse_command` is a pure function from a chat message to one of three answers, so an adapter only
has to render it: `Run` (a request to start), `Usage` (the help text) or `Invalid` (a one-line reason
that quotes the bad value and the valid choices). A message that is not a command gives None.

Chat is not a shell, so the tokenizer is forgiving where people type naturally: flags may come before
or after the topic, `--flag value` and `--flag=value` both work, curly quotes count as quotes, an
apostrophe inside a word (`what's`, `d'água`) is not a quote, `#` and `\\` are plain text, and the
dash a phone makes of `--` (`—rounds`) is read as `--`. A quote that is left open is an error rather
than a guess.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Collection
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from bot.request import SessionRequest
from engine.config import MAX_ROUNDS, MAX_TOPIC_CHARS
from engine.rules import VOTING_RULES
from personas import TEAMS, TeamError, team_ids
from personas.teams import choices as team_choices

DEFAULT_PREFIX: Final = "!roundtable"

FlagName = Literal["rounds", "voting", "team"]
#: The options, in the order the usage text lists them.
FLAGS: Final[tuple[FlagName, ...]] = ("rounds", "voting", "team")

# Placeholder for an apostrophe inside a word while shlex runs (a private-use code point).
_APOSTROPHE: Final = "\ue000"
_IN_WORD_APOSTROPHE: Final = re.compile(r"(?<=\w)'(?=\w)")
_QUOTES: Final = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'"})
_PHONE_DASH: Final = re.compile(r"^[—–]-?")


class Run(BaseModel):
    """Start a deliberation with this request (still to be checked against settings by `build_config`)."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["run"] = "run"
    request: SessionRequest


class Usage(BaseModel):
    """Show the help text: the user asked for it, or gave the bare command."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["usage"] = "usage"
    text: str


class Invalid(BaseModel):
    """Reply with a one-line reason; the message quotes the bad value and the valid choices."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["invalid"] = "invalid"
    message: str


Command = Run | Usage | Invalid


class _Reject(Exception):
    """Internal: stops parsing with the one-line reason for `Invalid`."""


class _HelpAsked(Exception):
    """Internal: `--help` or `-h` appeared as an option; the answer is the usage text."""


def usage(prefix: str = DEFAULT_PREFIX) -> str:
    """The help text for the command under `prefix`."""
    return "\n".join(
        [
            f"usage: {prefix} <topic> [--rounds 1-{MAX_ROUNDS}] [--voting RULE] [--team TEAM]",
            "  A team of personas discusses the topic, makes proposals and votes on them.",
            f"  --rounds N     discussion rounds, 1-{MAX_ROUNDS}",
            f"  --voting RULE  {' | '.join(VOTING_RULES)}",
            f"  --team TEAM    {' | '.join(TEAMS)}, or persona ids such as analyst,skeptic",
            "  Options go before or after the topic; quote a topic that contains --.",
            f'  example: {prefix} "Should we move to Postgres?" --rounds 2 --voting ranked',
        ]
    )


def parse_command(
    text: str, *, prefix: str = DEFAULT_PREFIX, personas: Collection[str] | None = None
) -> Command | None:
    """Read a chat message as a RoundTable command.

    Args:
        text: the message as typed.
        prefix: the command word; matched case-insensitively, and only as a whole word.
        personas: the persona ids that may be chosen; when given, `--team` is checked against them,
            otherwise only its shape is checked and `build_config` checks the rest.

    Returns:
        None when the message is not this command, else `Run`, `Usage` or `Invalid`.
    """
    stripped = text.strip()
    head = stripped[: len(prefix)]
    rest = stripped[len(prefix) :]
    if head.casefold() != prefix.casefold() or (rest and not rest[0].isspace()):
        return None
    try:
        tokens = _tokenize(rest)
        if not tokens:
            return Usage(text=usage(prefix))
        return Run(request=_request(tokens, personas))
    except _HelpAsked:
        return Usage(text=usage(prefix))
    except _Reject as exc:
        return Invalid(message=str(exc))


def _tokenize(rest: str) -> list[str]:
    protected = _IN_WORD_APOSTROPHE.sub(_APOSTROPHE, rest.translate(_QUOTES))
    lexer = shlex.shlex(protected, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""
    try:
        tokens = list(lexer)
    except ValueError:
        raise _Reject("a quote (' or \") is left open; close it, or write the topic without quotes") from None
    return [token.replace(_APOSTROPHE, "'") for token in tokens]


def _flag_name(token: str) -> tuple[str, str | None] | None:
    """`(name, inline value)` when the token is an option (`--x`, `--x=v`), else None.

    A phone's dash (`—rounds`) counts only before a known option name, so `—well` stays topic text.
    """
    dashed = _PHONE_DASH.sub("--", token)
    if not dashed.startswith("--") or len(dashed) == 2:
        return None
    name, eq, value = dashed[2:].partition("=")
    name = name.lower()
    if dashed != token and name not in (*FLAGS, "help"):
        return None
    return name, (value if eq else None)


def _request(tokens: list[str], personas: Collection[str] | None) -> SessionRequest:
    values: dict[str, str] = {}
    words: list[str] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token == "--":  # everything after a bare `--` is topic
            words.extend(tokens[position:])
            break
        if token.lower() == "-h":
            raise _HelpAsked
        flag = _flag_name(token)
        if flag is None:
            words.append(token)
            continue
        name, value = flag
        if name == "help":
            raise _HelpAsked
        if name not in FLAGS:
            raise _Reject(_unknown_flag(name))
        if name in values:
            raise _Reject(f"--{name} is given twice; give it once")
        if value is None:
            if position == len(tokens) or _flag_name(tokens[position]) is not None:
                raise _Reject(f"--{name} needs a value; {_choices(name)}")
            value = tokens[position]
            position += 1
        values[name] = value
    topic = " ".join(words).strip()
    if not topic:
        raise _Reject("the topic is empty; say what the team should deliberate after the command")
    if len(topic) > MAX_TOPIC_CHARS:
        raise _Reject(f"the topic is {len(topic)} characters; the limit is {MAX_TOPIC_CHARS}")
    return SessionRequest(
        topic=topic,
        rounds=_rounds(values["rounds"]) if "rounds" in values else None,
        voting=_voting(values["voting"]) if "voting" in values else None,
        team=_team(values["team"], personas) if "team" in values else None,
    )


def _choices(name: str) -> str:
    if name == "rounds":
        return f"choose 1-{MAX_ROUNDS}"
    if name == "voting":
        return f"choose one of {', '.join(VOTING_RULES)}"
    return f"choose a team ({', '.join(TEAMS)}) or persona ids such as analyst,skeptic"


def _unknown_flag(name: str) -> str:
    close = difflib.get_close_matches(name, FLAGS, n=1)
    hint = f" (did you mean '--{close[0]}'?)" if close else ""
    valid = ", ".join(f"--{flag}" for flag in (*FLAGS, "help"))
    return f"unknown option '--{name}'{hint}; choose one of {valid}"


def _rounds(value: str) -> int:
    try:
        rounds = int(value.strip())
    except ValueError:
        raise _Reject(f"--rounds '{value}' is not a number; choose 1-{MAX_ROUNDS}") from None
    if not 1 <= rounds <= MAX_ROUNDS:
        raise _Reject(f"--rounds {rounds} is out of range; choose 1-{MAX_ROUNDS}")
    return rounds


def _voting(value: str) -> str:
    rule = value.strip().lower()
    if not rule:
        raise _Reject(f"--voting is empty; {_choices('voting')}")
    if rule not in VOTING_RULES:
        raise _Reject(f"unknown voting rule '{value.strip()}'; choose one of {', '.join(VOTING_RULES)}")
    return rule


def _team(value: str, personas: Collection[str] | None) -> str:
    """The team spec normalized (`Analyst, SKEPTIC` -> `analyst,skeptic`), checked by `team_ids`."""
    spec = value.strip().lower()
    known = {persona.lower() for persona in personas} if personas is not None else None
    if not spec:
        raise _Reject(f"--team is empty; {team_choices(known)}")
    try:
        ids = team_ids(spec, known)
    except TeamError as exc:
        raise _Reject(str(exc)) from None
    return spec if spec in TEAMS else ",".join(ids)
