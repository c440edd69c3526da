"""Boundary-respecting text splitting, for platforms that cap a message's length.

Discord caps an embed field at 1024 characters and a description at 4096; Slack caps a text block at
3000. Cutting at a fixed offset would break words and lose the reader, so text is cut at the largest
boundary that fits: a paragraph, then a line, then a sentence, then a word. Only a single word longer
than the limit is cut inside, since nothing else can make it fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.errors import BadRequest

#: Boundaries from the largest to the smallest; each pattern matches the separator between pieces.
_BOUNDARIES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraph
    re.compile(r"[ \t]*\n\s*"),  # line
    re.compile(r"(?<=[.!?…])\s+"),  # sentence
    re.compile(r"\s+"),  # word
)


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into chunks of at most `limit` characters, cutting only at boundaries.

    The chunks, joined with whitespace, read as the original text: nothing is dropped, and only the
    whitespace at each cut point goes away. Whitespace-only text gives no chunk.

    Args:
        text: the text to split.
        limit: the most characters a chunk may hold, at least 1.

    Raises:
        BadRequest: `limit` is below 1.
    """
    _check_limit(limit)
    text = text.strip()
    if not text:
        return []
    return [chunk.strip() for chunk in _split(text, limit, 0) if chunk.strip()]


def pack_blocks(blocks: Sequence[str], limit: int, *, separator: str = "\n\n") -> list[str]:
    """Lay whole blocks onto pages of at most `limit` characters, splitting only blocks that cannot fit.

    A block that does not fit on the current page starts the next one, so an entry or a proposal is
    not torn across pages when it could be read whole; a block longer than a page goes through
    `split_text` and fills pages of its own.

    Raises:
        BadRequest: `limit` is below 1.
    """
    _check_limit(limit)
    pages: list[str] = []
    current = ""
    for raw in blocks:
        block = raw.strip()
        if not block:
            continue
        if current and len(current) + len(separator) + len(block) <= limit:
            current = f"{current}{separator}{block}"
            continue
        if current:
            pages.append(current)
        parts = split_text(block, limit)
        pages.extend(parts[:-1])
        current = parts[-1]
    if current:
        pages.append(current)
    return pages


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise BadRequest(f"page limit {limit!r} is too small; choose a limit of at least 1 character")


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    if level == len(_BOUNDARIES):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    # With a capturing group, re.split alternates pieces and the separators between them.
    parts = re.split(f"({_BOUNDARIES[level].pattern})", text)
    pieces, separators = parts[0::2], parts[1::2]
    chunks: list[str] = []
    current = ""
    for i, piece in enumerate(pieces):
        if not piece:
            continue
        joiner = separators[i - 1] if i > 0 and current else ""
        if current and len(current) + len(joiner) + len(piece) <= limit:
            current = f"{current}{joiner}{piece}"
            continue
        if current:
            chunks.append(current)
        sub = _split(piece, limit, level + 1)
        chunks.extend(sub[:-1])
        current = sub[-1]
    if current:
        chunks.append(current)
    return chunks
