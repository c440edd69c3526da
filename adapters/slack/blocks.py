"""Block Kit building blocks that respect Slack's limits by construction.

Slack refuses a message that breaks a Block Kit limit (`invalid_blocks`), so every builder here
checks its own: long text becomes several section blocks cut at paragraph, line, sentence or word
boundaries (`bot.views.split_text`), a header that would not fit gives way to a fixed one, and a list
of blocks longer than a message allows becomes several messages. Nothing is cut inside a word, and
nothing is dropped, except where a label must be short (header, button, fallback `text`) and the
full words are shown elsewhere in the same message.

Limits (docs.slack.dev/reference/block-kit): 50 blocks per message, 3000 characters of section
text, 150 of header text, 75 of button text, 10 context elements, 255 for an `action_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from bot.views import split_text

Block = dict[str, Any]

MAX_BLOCKS: Final = 50
MAX_SECTION_TEXT: Final = 3000
MAX_HEADER_TEXT: Final = 150
MAX_BUTTON_TEXT: Final = 75
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_CONTEXT_TEXT: Final = 3000
#: The notification fallback (`text`) is a summary of the blocks, kept well under Slack's 4,000
#: recommended characters; the blocks carry the full content.
MAX_FALLBACK_TEXT: Final = 300
#: Our own cap on one message's blocks (as JSON): Slack documents no total, but refuses very large
#: payloads, and a reader is better served by a second message than by a wall of text.
MAX_MESSAGE_CHARS: Final = 12_000
ELLIPSIS: Final = "…"


class SlackMessage(BaseModel):
    """One message's `text` (notification fallback) and `blocks`, as the Web API takes them."""

    model_config = ConfigDict(frozen=True)

    text: str
    blocks: list[Block]

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: `&`, `<` and `>` are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """What the user typed, from a message event's escaped `text`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary with an ellipsis when it exceeds `limit`.

    Only for labels whose full text is shown elsewhere (a header, a button, a notification).
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = split_text(flat, limit - len(ELLIPSIS))[0]
    return head + ELLIPSIS


def mrkdwn_chunks(text: str, limit: int = MAX_SECTION_TEXT) -> list[str]:
    """`text` escaped for mrkdwn, in chunks of at most `limit` characters after escaping.

    Escaping lengthens the text (`&` becomes `&amp;`), so a chunk that grows past the limit is split
    again, finer; the cuts stay at boundaries of the original text.
    """
    return _escaped_chunks(text, limit, limit)


def _escaped_chunks(text: str, limit: int, raw_limit: int) -> list[str]:
    chunks: list[str] = []
    for piece in split_text(text, raw_limit):
        escaped = escape(piece)
        if len(escaped) <= limit or len(piece) == 1:
            chunks.append(escaped)
        else:
            # Shrink in proportion to the growth; strictly below len(piece), so this ends.
            chunks.extend(_escaped_chunks(piece, limit, max(1, len(piece) * limit // len(escaped))))
    return chunks


def sections(text: str, *, title: str | None = None) -> list[Block]:
    """`text` as one or more mrkdwn section blocks; `title` (already mrkdwn) leads the first one."""
    head = f"{title}\n" if title else ""
    chunks = mrkdwn_chunks(text, MAX_SECTION_TEXT - len(head)) if text.strip() else []
    if not chunks:
        return [section(title)] if title else []
    return [section(head + chunks[0]), *(section(chunk) for chunk in chunks[1:])]


def section(mrkdwn: str) -> Block:
    """One section; the caller has escaped and sized the text (see `sections`)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def fits_header(text: str) -> bool:
    return len(" ".join(text.split())) <= MAX_HEADER_TEXT


def header(text: str, *, fallback: str) -> Block:
    """A header with `text`, or with `fallback` when `text` is too long to show whole."""
    shown = text if fits_header(text) else fallback
    return {"type": "header", "text": {"type": "plain_text", "text": shorten(shown, MAX_HEADER_TEXT)}}


def context(texts: Iterable[str]) -> list[Block]:
    """Small grey mrkdwn lines; more than ten of them, or a long one, make further context blocks."""
    elements = [
        {"type": "mrkdwn", "text": chunk}
        for text in texts
        if text.strip()
        for chunk in mrkdwn_chunks(text, MAX_CONTEXT_TEXT)
    ]
    return [
        {"type": "context", "elements": elements[i : i + MAX_CONTEXT_ELEMENTS]}
        for i in range(0, len(elements), MAX_CONTEXT_ELEMENTS)
    ]


def button(label: str, action_id: str, *, primary: bool = False) -> Block:
    """A button whose `action_id` and `value` are both `action_id` (a `bot.chat.button_id`)."""
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": shorten(label, MAX_BUTTON_TEXT), "emoji": True},
        "action_id": action_id,
        "value": action_id,
    }
    if primary:
        element["style"] = "primary"
    return element


def actions(buttons: Sequence[Block]) -> list[Block]:
    return [{"type": "actions", "elements": list(buttons)}] if buttons else []


def divider() -> Block:
    return {"type": "divider"}


def fallback(text: str) -> str:
    """The notification `text` of a message: one line, at most `MAX_FALLBACK_TEXT` characters."""
    return shorten(text, MAX_FALLBACK_TEXT) or "RoundTable"


def single_message(text: str, blocks: Sequence[Block]) -> SlackMessage:
    """A message that is one by nature (a status that is edited, one page of a paginated view).

    Its callers keep it far below 50 blocks by construction (a page holds `PAGE_CHARS`, a status a
    line per agent); the cut here is only a last guard, so that Slack never refuses the message.
    """
    return SlackMessage(text=fallback(text), blocks=list(blocks[:MAX_BLOCKS]))


def split_messages(text: str, blocks: Sequence[Block]) -> list[SlackMessage]:
    """`blocks` as one message, or as several when they exceed 50 blocks or `MAX_MESSAGE_CHARS`.

    Follow-up messages say which part they are in their fallback text; an `actions` block is kept
    with the block before it, so buttons never stand alone at the top of a message.
    """
    parts: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        block_size = len(json.dumps(block, ensure_ascii=False))
        current = parts[-1]
        if current and (len(current) == MAX_BLOCKS or size + block_size > MAX_MESSAGE_CHARS):
            carried = [current.pop()] if block["type"] == "actions" and len(current) > 1 else []
            parts.append(carried)
            size = sum(len(json.dumps(b, ensure_ascii=False)) for b in carried)
        parts[-1].append(block)
        size += block_size
    total = len(parts)
    if total == 1:
        return [SlackMessage(text=fallback(text), blocks=parts[0])]
    return [
        SlackMessage(text=fallback(text if i == 0 else f"{text} (part {i + 1} of {total})"), blocks=part)
        for i, part in enumerate(parts)
    ]
