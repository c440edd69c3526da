"""Who may start a session: an allowlist of users, and admin roles that bypass it."""

from __future__ import annotations

from collections.abc import Iterable

from bot.chat.origin import ChatOrigin

NOT_ENABLED = "you are not on this RoundTable's list of enabled users; ask an admin to add your user id"


class AccessPolicy:
    """An empty allowlist lets everyone in; an admin role lets its holder in and past the rate limit.

    Ids in the allowlist may be bare (`U123`) or qualified by platform (`slack:U123`), since Discord
    and Slack ids could in principle collide.
    """

    def __init__(self, enabled_users: Iterable[str] = (), admin_roles: Iterable[str] = ()) -> None:
        self._users = frozenset(enabled_users)
        self._admin_roles = frozenset(admin_roles)

    def is_admin(self, origin: ChatOrigin) -> bool:
        return not self._admin_roles.isdisjoint(origin.roles)

    def refusal(self, origin: ChatOrigin) -> str | None:
        """The one-line reason `origin`'s user may not start a session, or None when they may."""
        if not self._users or self.is_admin(origin):
            return None
        if origin.user_id in self._users or origin.user_key in self._users:
            return None
        return NOT_ENABLED
