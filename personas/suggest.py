"""Suggest a team for a topic, from two small rule tables.

How a suggestion is made:

1. **Shape picks the base team.** `SHAPE_RULES` are tried in order and the first that fits wins:
   a long topic (`LONG_WORDS` words or more) or a multi-part one (two or more questions or list
   items) gets `full`; a short either/or (at most `SHORT_WORDS` words, with "or", "vs" or "versus")
   gets `compact`; anything else gets `default`.
2. **Keywords add the voices a topic needs.** Every rule of `PERSONA_RULES` whose keywords occur in
   the topic adds its persona: ethics and people -> ethicist; risk and security -> skeptic; a request
   to summarise or synthesise -> summarizer. The analyst, the creative and the pragmatist sit in every
   named team, so no rule needs to add them.
3. **The result is named when it can be.** Members are put in the `full` team's order; if they equal a
   named team the name is returned (`default` + summarizer is `full`), otherwise a comma list of ids.

Keywords match whole words of the lowercased topic; one ending in `*` matches any word starting with
it (`ethic*` matches "ethical"), and one with a space matches that phrase. Prefixes are chosen so that
ordinary words do not trigger them ("risotto" is not "risk*", "audition" is not "audit").

The function is pure and the tables are data, so tests read as a table and a rule changes in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from personas.teams import TEAMS

#: A topic of this many words or more is long enough to use every voice.
LONG_WORDS: Final = 60
#: An either/or topic of at most this many words is simple enough for the compact team.
SHORT_WORDS: Final = 15
#: The team when no shape rule fits.
FALLBACK_TEAM: Final = "default"


@dataclass(frozen=True)
class ShapeRule:
    """Picks the base team when a topic's shape fits every condition set on the rule."""

    name: str
    team: str
    why: str
    min_words: int | None = None
    max_words: int | None = None
    min_parts: int | None = None
    either_or: bool | None = None


@dataclass(frozen=True)
class PersonaRule:
    """Adds `persona` to the team when any of `keywords` occurs in the topic."""

    name: str
    persona: str
    why: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Suggestion:
    """A suggested team spec (a team name or a comma list of ids) and the rules that shaped it."""

    team: str
    reasons: tuple[str, ...]


def _keywords(text: str) -> tuple[str, ...]:
    """Split a comma-separated keyword list; kept as one string so the tables stay readable."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


SHAPE_RULES: Final[tuple[ShapeRule, ...]] = (
    ShapeRule(
        name="long",
        team="full",
        why="a long topic has room for every voice, and a summarizer to pull it together",
        min_words=LONG_WORDS,
    ),
    ShapeRule(
        name="multi-part",
        team="full",
        why="a multi-part question needs every voice, and a summarizer to pull the parts together",
        min_parts=2,
    ),
    ShapeRule(
        name="either/or",
        team="compact",
        why="a short either/or is settled faster by a small team",
        max_words=SHORT_WORDS,
        either_or=True,
    ),
)

PERSONA_RULES: Final[tuple[PersonaRule, ...]] = (
    PersonaRule(
        name="ethics",
        persona="ethicist",
        why="the topic touches on ethics, fairness or people's rights",
        keywords=_keywords(
            "ethic*, moral, morals, morality, immoral, fair, fairness, unfair, bias, biased, biases, "
            "discriminat*, privacy, consent, surveil*, harm, harms, harmful, justice, injustice, "
            "rights, equity, equitable, inclusion, inclusive, accessibility, dignity, welfare, "
            "wellbeing, well being, deceptive, deceive, manipulative, exploitation, layoff*, "
            "lay off, minors, personal data"
        ),
    ),
    PersonaRule(
        name="risk",
        persona="skeptic",
        why="the topic involves risk or security, which needs a skeptic",
        keywords=_keywords(
            "risk*, secur*, insecure, vulnerab*, attack*, breach*, threat*, danger*, unsafe, safety, "
            "fraud*, scam, scams, scammer*, hack, hacked, hacker, hackers, hacking, password*, "
            "encrypt*, exploit, exploits, liabilit*, compliance, audit, audits, auditing, auditor, "
            "auditors, outage*, downtime, gambl*, crypto*, single point of failure, "
            "too good to be true"
        ),
    ),
    PersonaRule(
        name="summary",
        persona="summarizer",
        why="the topic asks for a summary or synthesis",
        keywords=_keywords(
            "summar*, synthesis, synthesise, synthesize, overview, recap, pros and cons, wrap up, tl dr"
        ),
    ),
)

_WORD = re.compile(r"[a-z0-9]+")
_QUESTION = re.compile(r"\?+")
#: A list item: a bullet or `1.` at the start of a line, or `1)` / `(1)` / `(a)` anywhere.
_ITEM = re.compile(r"^[ \t]*(?:[-*•]|\d{1,2}\.)[ \t]+\S|(?:^|(?<=\s))\(?(?:\d{1,2}|[a-zA-Z])\)[ \t]+\S", re.M)
_EITHER_OR = ("or", "vs", "versus")


def suggest_team(topic: str) -> str:
    """A team spec for `topic`: a team name (`default`, `full`, `compact`) or a comma list of ids.

    The result is always accepted by `resolve_team` with the built-in personas.
    """
    return suggest(topic).team


def suggest(topic: str) -> Suggestion:
    """Like `suggest_team`, with the reasons, so a front end can say why it chose this team."""
    words = topic.split()
    tokens = _WORD.findall(topic.lower())
    parts = max(len(_QUESTION.findall(topic)), len(_ITEM.findall(topic)))
    either_or = any(token in _EITHER_OR for token in tokens)

    base, reasons = FALLBACK_TEAM, []
    for shape in SHAPE_RULES:
        if _fits(shape, words=len(words), parts=parts, either_or=either_or):
            base = shape.team
            reasons.append(f"{shape.name}: {shape.why}")
            break
    members = set(TEAMS[base])
    for rule in PERSONA_RULES:
        if rule.persona not in members and _mentions(tokens, rule.keywords):
            members.add(rule.persona)
            reasons.append(f"{rule.name}: {rule.why}")
    ordered = tuple(persona for persona in TEAMS["full"] if persona in members)
    for name, team in TEAMS.items():
        if team == ordered:
            return Suggestion(team=name, reasons=tuple(reasons))
    return Suggestion(team=",".join(ordered), reasons=tuple(reasons))


def _fits(shape: ShapeRule, *, words: int, parts: int, either_or: bool) -> bool:
    return (
        (shape.min_words is None or words >= shape.min_words)
        and (shape.max_words is None or words <= shape.max_words)
        and (shape.min_parts is None or parts >= shape.min_parts)
        and (shape.either_or is None or either_or == shape.either_or)
    )


def _mentions(tokens: list[str], keywords: tuple[str, ...]) -> bool:
    words = set(tokens)
    text = f" {' '.join(tokens)} "
    for keyword in keywords:
        if " " in keyword:
            if f" {keyword} " in text:
                return True
        elif keyword.endswith("*"):
            stem = keyword[:-1]
            if any(token.startswith(stem) for token in words):
                return True
        elif keyword in words:
            return True
    return False
