"""slack-sdk and aiohttp failures, mapped once into RoundTable's error tree with a line a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import RoundTableError

#: What to do about the Web API errors a workspace admin can fix.
HINTS: Final = {
    "not_in_channel": "invite the app to the channel (/invite @RoundTable)",
    "channel_not_found": "invite the app to the channel, or check the channel id",
    "invalid_auth": "check SLACK_BOT_TOKEN (api.slack.com/apps → OAuth & Permissions)",
    "not_authed": "check SLACK_BOT_TOKEN (api.slack.com/apps → OAuth & Permissions)",
    "token_revoked": "reinstall the app and update SLACK_BOT_TOKEN",
    "ratelimited": "Slack is rate-limiting the app; it will work again shortly",
}


class SlackError(RoundTableError):
    """Slack's Web API refused a call, or could not be reached."""


@contextmanager
def slack_errors(method: str) -> Iterator[None]:
    """Raise `SlackError` for any slack-sdk or HTTP failure inside, naming the Web API method."""
    try:
        yield
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        hint = HINTS.get(error)
        if error == "missing_scope":
            needed = exc.response.get("needed") or "the scope it names"
            hint = f"add {needed} under api.slack.com/apps → OAuth & Permissions and reinstall the app"
        raise SlackError(f"Slack refused {method}: {error}" + (f"; {hint}" if hint else "")) from exc
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise SlackError(f"Slack could not be reached for {method} ({type(exc).__name__})") from exc
