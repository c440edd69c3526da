"""Button ids that carry the session id, so a button works after the bot restarts.

A button's id is all a platform gives back when it is clicked, and it outlives the process that
posted it, so the id must hold everything the click needs: `rt:<action>:<session id>:<page>`. It fits
Discord's 100-character `custom_id` and Slack's 255-character `action_id`.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["discussion", "proposals", "stats"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
ACTION_LABELS: Final[dict[Action, str]] = {
    "discussion": "View Full Discussion",
    "proposals": "View All Proposals",
    "stats": "View Statistics",
}

#: Matches an id from `button_id`; named groups `action`, `session` and `page`.
BUTTON_PATTERN: Final = (
    r"rt:(?P<action>discussion|proposals|stats):(?P<session>[A-Za-z0-9_-]{1,64}):(?P<page>\d{1,4})"
)
_BUTTON = re.compile(BUTTON_PATTERN)
MAX_PAGE: Final = 9999


class ButtonRef(BaseModel):
    """What a clicked button asks for."""

    model_config = ConfigDict(frozen=True)

    action: Action
    session_id: str
    page: int = Field(default=0, ge=0, le=MAX_PAGE)


def button_id(action: Action, session_id: str, page: int = 0) -> str:
    """The id of the button that shows `page` of `action` for a session."""
    custom_id = f"rt:{action}:{session_id}:{page}"
    if not _BUTTON.fullmatch(custom_id):
        raise ValueError(f"cannot make a button id of {action!r}, {session_id!r}, page {page}")
    return custom_id


def parse_button_id(custom_id: str) -> ButtonRef | None:
    """The request behind a button id, or None when the id is not one of ours."""
    match = _BUTTON.fullmatch(custom_id)
    if match is None:
        return None
    page = int(match["page"])
    return ButtonRef(action=match["action"], session_id=match["session"], page=page)
