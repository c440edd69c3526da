"""`roundtable tally`: count ballot documents with the same code live sessions use."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.voting import parse_document, tally, tally_jsonl_line


def tally_text(text: str | bytes, *, rule: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Count one JSON ballot document. Raises `BallotDocumentError` when it is malformed.

    Give standard input as bytes: decoded here, strictly, so that invalid UTF-8 is refused rather than
    carried through (a text stream may have smuggled it in as surrogate escapes).
    """
    doc = parse_document(text, rule=rule)
    if seed is not None:
        doc = doc.model_copy(update={"seed": seed})
    return tally(doc).model_dump(mode="json")


def tally_lines(
    lines: Sequence[str | bytes], *, rule: str | None = None, seed: int | None = None
) -> list[str]:
    """Count one document per line; a malformed line gets `{"error": reason}` and the run goes on."""
    return [json.dumps(tally_jsonl_line(line, rule=rule, seed=seed)) for line in lines if line.strip()]
