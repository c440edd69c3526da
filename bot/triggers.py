"""When a chat message deserves a deliberation without being asked: a table of rules, tried in order.

    should_trigger(text) -> TriggerMatch | None

The rules are data (`TRIGGER_RULES`), in English and Portuguese:
- a phrase that asks for weighing (`pros and cons`, `dilemma`, `trade-off`, `prós e contras`...);
- a question offering a choice (`Postgres or MySQL?`, `café ou chá?`), or a comparison
  (`Postgres vs MySQL`, `X versus Y`), which needs no question mark;
- finally, any question longer than `min_question_chars`.

Matching is case- and accent-insensitive (`PROS E CONTRAS` and `opinioes` match `prós e contras`
and `opiniões`) and works on whole words only: `or` in `order` or `color`, `vs` in `canvas`, and
`ou` in `you` or `outro` do not fire on their own letters. A phrase also matches its plural
(`dilemmas`, `trade-offs`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

#: Questions longer than this many characters fire the `long_question` rule.
DEFAULT_MIN_QUESTION_CHARS: Final = 150

RuleKind = Literal["phrase", "choice", "long_question"]
Language = Literal["en", "pt"]


@dataclass(frozen=True, slots=True)
class TriggerRule:
    """One automatic trigger: a regular expression over the normalized text (lower case, no accents).

    `question_only` rules fire only inside a sentence that ends with a question mark.
    """

    name: str
    kind: RuleKind
    language: Language
    pattern: str
    question_only: bool = False


class TriggerMatch(BaseModel):
    """Which rule fired, and the words it fired on (as normalized for matching)."""

    model_config = ConfigDict(frozen=True)
    rule: str
    kind: RuleKind
    matched: str


def normalize(text: str) -> str:
    """Lower case, accents removed, curly apostrophes straightened: the form the rules match."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return plain.replace("’", "'").replace("‘", "'")


def _phrase(name: str, language: Language, *phrases: str) -> TriggerRule:
    """A rule for whole-word phrases; a space or hyphen in a phrase matches any run of either."""
    alternatives = "|".join(
        r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", normalize(phrase)))
        for phrase in phrases
    )
    return TriggerRule(name, "phrase", language, rf"\b(?:{alternatives})s?\b")


_WORD: Final = r"[^\W_][\w'-]*"

#: The rules, tried in this order; the first that fires is reported. Phrases are written as
#: people type them; they are normalized like the text before matching.
TRIGGER_RULES: Final[tuple[TriggerRule, ...]] = (
    _phrase("pros_and_cons", "en", "pros and cons"),
    _phrase("dilemma", "en", "dilemma"),
    _phrase("multiple_opinions", "en", "multiple opinions"),
    _phrase("trade_off", "en", "trade-off", "tradeoff"),
    _phrase("pros_e_contras", "pt", "prós e contras"),
    _phrase("dilema", "pt", "dilema"),
    _phrase("opinioes", "pt", "opiniões"),
    _phrase("conselho", "pt", "conselho"),
    TriggerRule("versus", "choice", "en", rf"{_WORD}\s+(?:vs\.?|versus)\s+{_WORD}"),
    TriggerRule("either_or", "choice", "en", rf"{_WORD}\s+or\s+{_WORD}", question_only=True),
    TriggerRule("ou", "choice", "pt", rf"{_WORD}\s+ou\s+{_WORD}", question_only=True),
)

_COMPILED: Final = tuple((rule, re.compile(rule.pattern)) for rule in TRIGGER_RULES)
# A sentence that ends in a question mark. A dot or `!` not followed by a space is inside the sentence
# (`3.12`, `e.g.x`), so `Python 3.11 or 3.12?` is one question.
_QUESTION: Final = re.compile(r"(?:[^.!?？\n]|[.!](?![\s.!?？]|$))*[?？]")


def should_trigger(text: str, *, min_question_chars: int = DEFAULT_MIN_QUESTION_CHARS) -> TriggerMatch | None:
    """The first rule that fires for a chat message, or None.

    Args:
        text: the message as typed.
        min_question_chars: a message with a question mark and more characters than this fires
            `long_question` when no other rule does.
    """
    plain = normalize(text)
    questions = _QUESTION.findall(plain)
    for rule, pattern in _COMPILED:
        for scope in questions if rule.question_only else (plain,):
            found = pattern.search(scope)
            if found:
                return TriggerMatch(rule=rule.name, kind=rule.kind, matched=found.group(0))
    stripped = text.strip()
    if len(stripped) > min_question_chars and questions:
        return TriggerMatch(rule="long_question", kind="long_question", matched=stripped[:40])
    return None
