"""The collaboration bus: the `AgentMessage` protocol, its backends, and mailboxes with delivery guarantees.

The delivery core sits at the top of this folder:

- `Bus` (`backend.py`) is the backend interface (streams, consumer groups, batch operations),
  implemented by `InMemoryBus` here, `RedisBus` (`redis/`) and `NatsBus` (`nats/`), and held to one
  contract suite (`tests/bus/test_contract.py`). `open_bus(url)` (`connect.py`) is the one place where
  a URL picks a backend.
- `Mailbox` is an agent's end of it, built on any `Bus`: per-agent priority lanes, broadcast and topics,
  at-least-once delivery handled effectively once, reclaim from dead consumers, dead letters, command
  policy with audit, retention with trimmed-before-delivery counts.

Beside it, the subpackages:

- `agents/`: the registry (who is in a workspace, what they can do, are they alive), request/response
  by correlation id (`Requester`), and the agent SDK (`ContainerAgent`);
- `turns/`: the engine's `AgentPort` over the bus (`BusAgentPort`) and the `PersonaWorker`;
- `ops/`: the operator's tools (dead letters, find, replay, stats) and Prometheus metrics, over the
  stream inspection that the backends offer (`inspection.py`, beside `Bus`);
- `redis/` and `nats/`: the backends, which never import each other.

This module is the face that the rest of RoundTable imports. The backends and the metrics exporter are
loaded on first use, so choosing NATS never imports redis-py and a CLI that only parses arguments loads
neither. The wire format for programs in other languages is `docs/bus-protocol.md`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bus.agents import AgentCard, ContainerAgent, Registry, Reply, Requester, RequestStats
from bus.backend import Bus, Claims, Delivery, Received, Record, Retention, Settlement
from bus.connect import IN_MEMORY_WARNING, MEMORY_URL, connect_bus, open_bus
from bus.deadletter import DeadLetter, fetch_dead_letters
from bus.delivery import DeliveryConfig, DeliveryStats, Envelope, Handler
from bus.events import BusEvent, fetch_events
from bus.mailbox import Mailbox
from bus.memory import InMemoryBus
from bus.message import ANY_AGENT, BROADCAST, WIRE_VERSION, AgentMessage, MalformedMessage
from bus.policy import AuditRecord, CommandPolicy, fetch_audit, fetch_policy, store_policy
from bus.ratelimit import InMemoryRateLimiter, RateDecision, RateLimiter, rate_limiter_for
from bus.turns import BusAgentPort, PersonaWorker
from bus.urls import redact_url

if TYPE_CHECKING:
    from bus.nats import NatsBus
    from bus.ops.metrics import BusMetrics, MetricsServer
    from bus.redis import PrivateRedis, RedisBus, RedisRateLimiter

#: Names loaded on first use, and the module that holds each.
_LAZY = {
    "NatsBus": "bus.nats",
    "RedisBus": "bus.redis",
    "RedisRateLimiter": "bus.redis",
    "PrivateRedis": "bus.redis",
    "BusMetrics": "bus.ops.metrics",
    "MetricsServer": "bus.ops.metrics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bus' has no attribute {name!r}")


__all__ = [
    "ANY_AGENT",
    "BROADCAST",
    "IN_MEMORY_WARNING",
    "MEMORY_URL",
    "WIRE_VERSION",
    "AgentCard",
    "AgentMessage",
    "AuditRecord",
    "Bus",
    "BusAgentPort",
    "BusEvent",
    "BusMetrics",
    "Claims",
    "CommandPolicy",
    "ContainerAgent",
    "DeadLetter",
    "Delivery",
    "DeliveryConfig",
    "DeliveryStats",
    "Envelope",
    "Handler",
    "InMemoryBus",
    "InMemoryRateLimiter",
    "Mailbox",
    "MalformedMessage",
    "MetricsServer",
    "NatsBus",
    "PersonaWorker",
    "PrivateRedis",
    "RateDecision",
    "RateLimiter",
    "Received",
    "Record",
    "RedisBus",
    "RedisRateLimiter",
    "Registry",
    "Reply",
    "RequestStats",
    "Requester",
    "Retention",
    "Settlement",
    "connect_bus",
    "fetch_audit",
    "fetch_dead_letters",
    "fetch_events",
    "fetch_policy",
    "open_bus",
    "rate_limiter_for",
    "redact_url",
    "store_policy",
]
