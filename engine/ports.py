"""The three interfaces the engine talks to the world through.

The engine never imports an I/O library: the bus, storage and LLM adapters implement these
protocols, and tests plug in the real adapters against local servers.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from engine.events import SessionEvent
from engine.turns import TurnReply, TurnRequest


class ChatMessage(BaseModel):
    role: str
    content: str


class LLMRequest(BaseModel):
    """One completion request, provider-neutral."""

    messages: list[ChatMessage]
    model: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    #: A JSON schema the reply must follow; sent as `response_format` where the provider supports it.
    json_schema: dict[str, Any] | None = None
    schema_name: str = "reply"
    timeout_s: float = 60.0
    metadata: dict[str, str] = Field(default_factory=dict)


class LLMResponse(BaseModel):
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    #: Requests that failed (429, 5xx) and were tried again before this reply.
    retries: int = 0


@runtime_checkable
class LLM(Protocol):
    """Completes a prompt. Raises `LLMError` when the provider fails."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


@runtime_checkable
class AgentPort(Protocol):
    """Asks one agent for one turn.

    Raises `AgentUnavailable` when the agent fails, and `BusUnavailable` when the transport itself is
    gone (the engine then stops, leaving the log resumable). The caller applies the per-turn timeout.
    """

    async def ask(self, request: TurnRequest) -> TurnReply: ...


@runtime_checkable
class SessionStore(Protocol):
    """The append-only event log of sessions.

    `append` is idempotent per event key (session, kind, step, agent): appending an event whose key is
    already stored returns False and changes nothing, so a resumed session never records a turn twice.
    Raises `StoreUnavailable` when the database cannot be reached.
    """

    async def append(self, session_id: str, event: SessionEvent) -> bool: ...

    async def load_events(self, session_id: str) -> list[SessionEvent]: ...
