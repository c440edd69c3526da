"""The engine's turns over the bus: `BusAgentPort` (the engine's `AgentPort`) asks, `PersonaWorker`
answers with a persona's prompt and the model."""

from bus.turns.port import BusAgentPort
from bus.turns.worker import PersonaWorker

__all__ = ["BusAgentPort", "PersonaWorker"]
