"""Tallying ballots under a voting rule: the one counting code behind sessions, `retally` and `tally`.

The behaviour and the output shape are fixed by docs/tally.md, which outside tools rely on:
`TallyResult.model_dump(mode="json")` is that output, field for field and in that order.

Everything here is pure: a document in, a result out. Ballot reading lives in `engine.ballots`, the
tie-break chain in `engine.tiebreak`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.ballots import InvalidBallot, Preference, ballot_fits, is_abstention, quote, read_ballot
from engine.errors import BallotDocumentError
from engine.rules import VOTING_RULES, VotingRule
from engine.tiebreak import Evidence, TieBreak, condorcet_winner, copeland_scores, order_tied

__all__ = [
    "DUPLICATE_VOTER",
    "InvalidBallot",
    "TallyInput",
    "TallyResult",
    "ballot_fits",
    "parse_document",
    "tally",
    "tally_jsonl_line",
]

#: The reason a second ballot from the same voter is invalid.
DUPLICATE_VOTER = "duplicate voter"
_CHOICE_RULES: tuple[VotingRule, ...] = ("majority", "unanimity")
_PAIRWISE_RULES: tuple[VotingRule, ...] = ("ranked", "condorcet")
#: `score_share` has always been written to 4 decimals; tally.md asks only `consensus` to be exact.
_SCORE_SHARE_DIGITS = 4


class TallyInput(BaseModel):
    """A ballot document: the candidates, who proposed them, and the raw ballots.

    Ballots stay raw dicts: `tally` checks each against its rule, and a wrong one is an invalid ballot
    (an abstention with a reason), not a malformed document. Constructing a document with no or
    duplicate candidates, or a ballot without a voter, raises `BallotDocumentError`.
    """

    model_config = ConfigDict(strict=True)

    rule: VotingRule
    candidates: list[str]
    #: candidate -> the voter who proposed it; read only under recusal.
    authors: dict[str, str] = Field(default_factory=dict)
    recusal: bool = False
    #: Feeds only the last tie-break step.
    seed: int = 0
    ballots: list[dict[str, Any]]

    @model_validator(mode="after")
    def _check(self) -> TallyInput:
        problem = _candidates_problem(self.candidates) or _ballots_problem(self.ballots)
        if problem:
            raise BallotDocumentError(problem)
        return self


class TallyResult(BaseModel):
    """The counted vote, in the contract's shape and key order."""

    rule: VotingRule
    winner: str | None
    scores: dict[str, int | float]
    ranking: list[str]
    tied: list[str]
    tiebreak: TieBreak | None
    valid_ballots: int
    abstentions: int
    invalid: list[InvalidBallot]
    consensus: float
    score_share: float | None
    absolute_majority: bool | None
    unanimity_reached: bool | None
    fallback: Literal["majority"] | None
    condorcet_winner: str | None


def tally(doc: TallyInput) -> TallyResult:
    """Count the document's ballots under its rule.

    Args:
        doc: the ballot document; its `seed` feeds only the seeded draw, so the same document always
            gives the same result.
    """
    candidates = doc.candidates
    valid: list[Preference] = []
    invalid: list[InvalidBallot] = []
    deliberate = 0
    voted: set[str] = set()
    for ballot in doc.ballots:
        voter = ballot["voter"]
        if voter in voted:
            # The first ballot a voter casts (an abstention too) is the one that counts.
            invalid.append(InvalidBallot(voter=voter, reason=DUPLICATE_VOTER))
            continue
        voted.add(voter)
        if is_abstention(ballot):
            deliberate += 1
            continue
        own = {c for c, author in doc.authors.items() if author == voter} if doc.recusal else set()
        read = read_ballot(doc.rule, ballot, candidates=candidates, own=own)
        if isinstance(read, InvalidBallot):
            invalid.append(read)
        else:
            valid.append(read)

    evidence = Evidence.of(candidates, valid)
    if doc.rule == "condorcet":
        scores = copeland_scores(candidates, evidence)
    else:
        scores = {c: sum(p.points.get(c, 0) for p in valid) for c in candidates}
    ranking, tied, tiebreak = _rank(candidates, scores, evidence, seed=doc.seed)
    winner = ranking[0] if valid else None
    if winner is None:
        tied, tiebreak = [], None

    unanimity_reached: bool | None = None
    fallback: Literal["majority"] | None = None
    if doc.rule == "unanimity":
        unanimity_reached = winner is not None and scores[winner] == len(valid)
        fallback = None if unanimity_reached else "majority"

    total = sum(scores.values())
    return TallyResult(
        rule=doc.rule,
        winner=winner,
        scores=dict(scores),
        ranking=ranking,
        tied=tied,
        tiebreak=tiebreak,
        valid_ballots=len(valid),
        abstentions=deliberate + len(invalid),
        invalid=invalid,
        consensus=_share(sum(1 for p in valid if winner in p.tops), len(valid)),
        score_share=None
        if doc.rule == "condorcet"
        else round(_share(scores[winner] if winner is not None else 0, total), _SCORE_SHARE_DIGITS),
        absolute_majority=(winner is not None and scores[winner] * 2 > len(valid))
        if doc.rule in _CHOICE_RULES
        else None,
        unanimity_reached=unanimity_reached,
        fallback=fallback,
        condorcet_winner=condorcet_winner(candidates, evidence)
        if doc.rule in _PAIRWISE_RULES and valid
        else None,
    )


def parse_document(
    raw: str | bytes | dict[str, Any], *, rule: str | None = None, seed: int | None = None
) -> TallyInput:
    """Read a ballot document (docs/tally.md, Input).

    Args:
        raw: the JSON text, or the already decoded object.
        rule: overrides the document's rule (the `--rule` flag).
        seed: overrides the document's seed (the `--seed` flag).

    Raises:
        BallotDocumentError: the document is malformed; the one-line message says how.
    """
    if isinstance(raw, dict):
        data = dict(raw)
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BallotDocumentError(
                f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except UnicodeDecodeError as exc:
            raise BallotDocumentError(
                f"not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not valid UTF-8 text"
            ) from None
        except ValueError:
            raise BallotDocumentError("not JSON: the input is not valid UTF-8 text") from None
        except RecursionError:
            raise BallotDocumentError("not JSON: the document is nested too deeply") from None
        if not isinstance(data, dict):
            raise BallotDocumentError(f"the document must be a JSON object, got {_kind(data)}")
    if rule is not None:
        data["rule"] = rule
    if seed is not None:
        data["seed"] = seed
    problem = (
        _rule_problem(data)
        or _field_problem(data)
        or _candidates_problem(data["candidates"])
        or _ballots_problem(data["ballots"])
    )
    if problem:
        raise BallotDocumentError(problem)
    try:
        return TallyInput.model_validate(data)
    except ValidationError as exc:  # a guard: the checks above should leave nothing for pydantic
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "document"
        raise BallotDocumentError(f"{where}: {err['msg']}") from None


def tally_jsonl_line(line: str | bytes, *, rule: str | None, seed: int | None) -> dict[str, Any]:
    """One line of `tally --jsonl`: the result as JSON-ready dict, or `{"error": reason}`."""
    try:
        doc = parse_document(line, rule=rule, seed=seed)
    except BallotDocumentError as exc:
        return {"error": str(exc)}
    return tally(doc).model_dump(mode="json")


def _rank(
    candidates: Sequence[str], scores: dict[str, int], evidence: Evidence, *, seed: int
) -> tuple[list[str], list[str], TieBreak | None]:
    """Every candidate best first, the candidates tied at the top, and the step that broke that tie."""
    ranking: list[str] = []
    tied: list[str] = []
    tiebreak: TieBreak | None = None
    for score in sorted(set(scores.values()), reverse=True):
        group = [c for c in candidates if scores[c] == score]
        ordered, step = order_tied(group, evidence, seed=seed)
        if not ranking and len(group) > 1:
            tied, tiebreak = group, step
        ranking.extend(ordered)
    return ranking, tied, tiebreak


def _share(part: int, whole: int) -> float:
    """`part / whole` exactly (tally.md: consensus is never rounded; views round it), 0.0 for nothing."""
    return part / whole if whole else 0.0


def _rule_problem(data: dict[str, Any]) -> str | None:
    choices = ", ".join(VOTING_RULES)
    if "rule" not in data:
        return f"missing 'rule'; choose one of {choices}"
    if data["rule"] not in VOTING_RULES:
        return f"unknown voting rule {quote(data['rule'])}; choose one of {choices}"
    return None


def _field_problem(data: dict[str, Any]) -> str | None:
    """Type problems in the document's fields, phrased before pydantic phrases them worse."""
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return "no candidates: 'candidates' must be a non-empty list of ids"
    bad_id = next((c for c in candidates if not isinstance(c, str)), None)
    if bad_id is not None:
        return f"candidate ids must be strings, got {quote(bad_id)}"
    authors = data.get("authors", {})
    if not isinstance(authors, dict) or not all(isinstance(v, str) for v in authors.values()):
        return "'authors' must be an object mapping candidate ids to voter ids"
    recusal = data.get("recusal", False)
    if not isinstance(recusal, bool):
        return f"'recusal' must be true or false, got {quote(recusal)}"
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"'seed' must be an integer, got {quote(seed)}"
    if "ballots" not in data:
        return "missing 'ballots': it must be a list of ballots"
    if not isinstance(data["ballots"], list):
        return f"'ballots' must be a list of ballots, got {_kind(data['ballots'])}"
    return None


def _candidates_problem(candidates: Sequence[str]) -> str | None:
    if not candidates:
        return "no candidates: 'candidates' must be a non-empty list of ids"
    seen: set[str] = set()
    for c in candidates:
        if c in seen:
            return f"duplicate candidate id {quote(c)}"
        seen.add(c)
    return None


def _ballots_problem(ballots: Sequence[Any]) -> str | None:
    for i, ballot in enumerate(ballots):
        if not isinstance(ballot, dict):
            return f"ballots[{i}] must be an object, got {_kind(ballot)}"
        voter = ballot.get("voter")
        if voter is None or voter == "":
            return f"ballots[{i}] has no 'voter'"
        if not isinstance(voter, str):
            return f"ballots[{i}]: 'voter' must be a string, got {quote(voter)}"
    return None


def _kind(value: Any) -> str:
    """A value's JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__
