"""Discord's limits on what one message may carry, and a way to fit a heading under them.

Discord refuses a whole message (400 Invalid Form Body) when any part is too long, so the renderer
plans every message under these numbers instead of trusting the text to be short.
Source: https://discord.com/developers/docs/resources/message#embed-object-embed-limits and
https://discord.com/developers/docs/components/reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.views import split_text

CONTENT: Final = 2000
EMBEDS_PER_MESSAGE: Final = 10
TITLE: Final = 256
DESCRIPTION: Final = 4096
FIELDS: Final = 25
FIELD_NAME: Final = 256
FIELD_VALUE: Final = 1024
FOOTER: Final = 2048
AUTHOR: Final = 256
#: Title, description, field names and values, footer and author name, over all embeds of a message.
EMBED_TOTAL: Final = 6000
BUTTON_LABEL: Final = 80
CUSTOM_ID: Final = 100
THREAD_NAME: Final = 100

ELLIPSIS: Final = "…"


def fit_heading(text: str, limit: int) -> str:
    """`text` when it fits, else its head cut at a word boundary with an ellipsis.

    Only for headings (titles, field names, labels, thread names) whose full text is shown elsewhere;
    body text is split over fields and messages instead, never shortened.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = split_text(text, limit - len(ELLIPSIS))[0]
    return head.rstrip(" ,;:.-") + ELLIPSIS


def embed_chars(embed: Mapping[str, Any]) -> int:
    """The characters of an embed that count towards `EMBED_TOTAL`."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for field in embed.get("fields") or []:
        total += len(field.get("name") or "") + len(field.get("value") or "")
    return total
