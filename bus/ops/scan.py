"""Reading a workspace's streams whole: the key prefix they share, and a stream a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bus.backend import Bus, stream_key

#: Entries read per round trip while scanning a stream.
PAGE = 500


def workspace_prefix(workspace: str) -> str:
    """`rt:{ws}:`, the start of every key of the workspace (`stream_key` checks the workspace)."""
    return stream_key(workspace, "x")[:-1]


async def scan(
    bus: Bus, stream: str, *, after: str | None = None
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every entry of `stream` after entry id `after` (from its start when None), in id order."""
    while True:
        rows = await bus.entries(stream, after=after, count=PAGE)
        for row in rows:
            yield row
        if len(rows) < PAGE:
            return
        after = rows[-1][0]
