"""Where a chat session came from, kept with the session so its result finds its way back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Platform = Literal["discord", "slack"]

#: The key under which the origin is stored in a session's metadata.
ORIGIN_KEY = "origin"


class ChatOrigin(BaseModel):
    """The channel, user and message that asked for a session.

    It is stored in the session's metadata, so a session resumed after a crash can post its result
    in the channel it came from.
    """

    model_config = ConfigDict(frozen=True)

    platform: Platform
    channel_id: str
    user_id: str
    #: The user's role ids and names (Discord); empty on Slack.
    roles: tuple[str, ...] = ()
    #: A Discord thread id or a Slack `thread_ts` to post into.
    thread_id: str | None = None
    #: The message that asked (a Discord message id, a Slack `ts`).
    message_id: str | None = None
    #: A Discord guild id or a Slack team id.
    guild_id: str | None = None

    @property
    def user_key(self) -> str:
        """The user's id qualified by platform, so ids from two platforms never share a rate limit."""
        return f"{self.platform}:{self.user_id}"

    @property
    def channel_key(self) -> str:
        return f"{self.platform}:{self.channel_id}"

    def metadata(self) -> dict[str, Any]:
        return {ORIGIN_KEY: self.model_dump(mode="json")}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ChatOrigin | None:
        """The origin stored by `metadata()`, or None for a session that did not come from chat."""
        raw = metadata.get(ORIGIN_KEY)
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls.model_validate(raw)
        except ValidationError:
            return None
