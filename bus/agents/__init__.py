"""Agents on the bus: the registry (who is here, what they can do, are they alive), request/response by
correlation id, and the agent SDK (`ContainerAgent`) that puts both together."""

from bus.agents.registry import AgentCard, Registry
from bus.agents.requests import Requester, RequestStats
from bus.agents.sdk import ContainerAgent, Reply

__all__ = ["AgentCard", "ContainerAgent", "Registry", "Reply", "RequestStats", "Requester"]
