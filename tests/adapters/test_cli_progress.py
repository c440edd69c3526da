"""The plain progress lines `ask` writes to a standard error that is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from adapters.cli.render import PlainProgress
from bot import Progress


def test_a_long_progress_line_is_not_wrapped_when_stderr_is_not_a_terminal() -> None:
    """Rich wraps at 80 columns when it sees no terminal; a script reads one event per line."""
    stream = io.StringIO()
    console = Console(file=stream, stderr=True)  # not a terminal: width falls back to 80
    gist = "We should weigh the cost of a four-day week against the gains in focus and retention " * 2
    PlainProgress(console)(
        Progress(kind="turn_completed", session_id="s1", step="round-1", agent="analyst", detail=gist)
    )
    PlainProgress(console)(Progress(kind="step_completed", session_id="s1", step="discussion", detail=gist))
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["round-1", "discussion:"]
    assert lines[0] == f"round-1 analyst ok: {gist[:120]}"
