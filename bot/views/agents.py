"""How a persona appears in a view: id, display name and emoji."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from personas import Persona

#: Shown for an agent whose persona is not loaded (a removed user persona, an external worker).
UNKNOWN_EMOJI = "👤"


class AgentRef(BaseModel):
    """An agent as a view shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    emoji: str

    @property
    def label(self) -> str:
        """`emoji name`, the way every view names an agent."""
        return f"{self.emoji} {self.name}"


def agent_ref(agent_id: str, personas: Mapping[str, Persona]) -> AgentRef:
    """The display identity of `agent_id`, falling back to its id when no persona is loaded."""
    persona = personas.get(agent_id)
    if persona is None:
        return AgentRef(id=agent_id, name=agent_id, emoji=UNKNOWN_EMOJI)
    return AgentRef(id=persona.id, name=persona.name, emoji=persona.emoji)
