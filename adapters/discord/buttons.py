"""Persistent buttons: a `DynamicItem` whose custom id carries the session, the action and the page.

Discord sends back only the custom id of a clicked button, and it may be clicked days later, after
the bot restarted. Registering `SessionButton` with `client.add_dynamic_items` at start-up makes
discord.py route every click whose id matches `BUTTON_PATTERN` to it, with no view kept in memory
per message; the id alone is enough to answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import discord

from adapters.discord.render import ButtonSpec
from bot.chat import BUTTON_PATTERN, ButtonRef, parse_button_id


@runtime_checkable
class ButtonHandler(Protocol):
    """What a client offers to answer a click (the RoundTable client does)."""

    async def answer_button(self, interaction: discord.Interaction[Any], ref: ButtonRef) -> None: ...


_STYLES = {"primary": discord.ButtonStyle.primary, "secondary": discord.ButtonStyle.secondary}


class SessionButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=re.compile(BUTTON_PATTERN),
):
    """A button that shows a page of a session's discussion, proposals or statistics."""

    def __init__(self, spec: ButtonSpec) -> None:
        super().__init__(
            discord.ui.Button(label=spec.label, style=_STYLES[spec.style], custom_id=spec.custom_id)
        )
        self.ref = spec.ref

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SessionButton:
        ref = parse_button_id(match.group(0))
        if ref is None:  # the template matched, so this cannot happen; keep mypy and readers sure
            raise ValueError(f"not a RoundTable button id: {match.group(0)!r}")
        label = getattr(item, "label", None) or ref.action
        return cls(ButtonSpec(ref=ref, label=label))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        if isinstance(client, ButtonHandler):
            await client.answer_button(interaction, self.ref)


def button_view(buttons: Sequence[ButtonSpec]) -> discord.ui.View:
    """A view of persistent buttons (no timeout); discord.py keeps no per-message state for it."""
    view = discord.ui.View(timeout=None)
    for spec in buttons:
        view.add_item(SessionButton(spec))
    return view
