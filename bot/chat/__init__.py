"""The chat core shared by the Discord and Slack adapters: admission, sessions, buttons.

service = await ChatService.open(runtime)
outcome = await service.handle(text, origin, presenter, mentioned=True)   # Ignored | Replied | Started
await service.resume_interrupted("discord", presenter_for)                 # at start-up
pages = await service.pages(session_id, "discussion", page_chars=3500)    # button clicks
"""

from bot.chat.access import AccessPolicy
from bot.chat.buttons import (
    ACTION_LABELS,
    ACTIONS,
    BUTTON_PATTERN,
    Action,
    ButtonRef,
    button_id,
    parse_button_id,
)
from bot.chat.origin import ChatOrigin, Platform
from bot.chat.presenter import ChatResult, SessionPresenter
from bot.chat.service import ChatService, Ignored, Outcome, Replied, Started, user_message
from engine.errors import SessionNotFound

__all__ = [
    "ACTIONS",
    "ACTION_LABELS",
    "BUTTON_PATTERN",
    "AccessPolicy",
    "Action",
    "ButtonRef",
    "ChatOrigin",
    "ChatResult",
    "ChatService",
    "Ignored",
    "Outcome",
    "Platform",
    "Replied",
    "SessionNotFound",
    "SessionPresenter",
    "Started",
    "button_id",
    "parse_button_id",
    "user_message",
]
