"""Test doubles for the engine's ports, shipped beside the engine (as httpx ships `MockTransport`).

    ScriptedAgents(script)           an `AgentPort` answering from a table or a function: a turn, a
                                     malformed reply, `AgentUnavailable` (any exception), or a stall
    InProcessAgents(personas, llm)   an `AgentPort` running the real `engine.respond` in this process
    InMemoryStore()                  a `SessionStore` in memory, idempotent per event key like the real one
    ManualClock()                    a clock for `Deliberation(clock=...)` that moves only when told

An `LLM` made of a function is `llms.FunctionLLM`; pass it to `InProcessAgents` (the engine may not
import `llms`, so it is not re-exported here).
"""

from __future__ import annotations

from engine.testing.agents import (
    STALL,
    InProcessAgents,
    Malformed,
    Script,
    Scripted,
    ScriptedAgents,
    Stall,
    default_turn,
    valid_ballot,
)
from engine.testing.clock import ManualClock
from engine.testing.store import InMemoryStore

__all__ = [
    "STALL",
    "InMemoryStore",
    "InProcessAgents",
    "Malformed",
    "ManualClock",
    "Script",
    "Scripted",
    "ScriptedAgents",
    "Stall",
    "default_turn",
    "valid_ballot",
]
