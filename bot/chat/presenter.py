"""What an adapter implements to show one session, and the result it is handed at the end."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from bot.views import ProgressView, ResultView
from engine.report import SessionReport


class ChatResult(BaseModel):
    """A finished session, ready to render."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    view: ResultView
    #: The vote chart as a PNG, or None when nobody voted.
    chart_png: bytes | None
    #: The session's report, the `ask --json` document of docs/cli.md.
    report: SessionReport


class SessionPresenter(Protocol):
    """One session's messages on one platform.

    The service calls `started` once, `progress` at most once per `progress_interval_s` with the
    latest view (and once more with the final view), then exactly one of `finished` or `failed`.
    A presenter's own failures are logged by the service; they never stop the session.
    """

    async def started(self, session_id: str, view: ProgressView) -> None:
        """Post the status message."""
        ...

    async def progress(self, view: ProgressView) -> None:
        """Edit the status message to show `view`."""
        ...

    async def finished(self, result: ChatResult) -> None:
        """Post the result with its buttons."""
        ...

    async def failed(self, message: str) -> None:
        """Tell the channel, in one line, that the session could not finish."""
        ...
