"""The collaboration bus: the `AgentMessage` protocol, its backends, and mailboxes with delivery guarantees.

Two layers:

- `Bus` is the backend interface (streams, consumer groups, batch operations), implemented by
  `RedisBus` and `InMemoryBus`, and held to one contract suite (`tests/bus/test_contract.py`).
- `Mailbox` is an agent's end of it, built on any `Bus`: per-agent priority lanes, broadcast and
  topics, at-least-once delivery handled effectively once, reclaim from dead consumers, dead letters,
  command policy with audit, retention with trimmed-before-delivery counts. See `bus/mailbox.py`.

Beside them, `Registry` (`bus/registry.py`) says who is in a workspace, what they can do and whether
they are alive, and the events stream (`bus/events.py`) tells who joined, left, went silent, and what
was dead-lettered.

On top, the agent SDK: `ContainerAgent` (`bus/sdk.py`) registers, serves and heartbeats an agent, and
sends, broadcasts and asks (`Requester`, `bus/requests.py`: request/response by correlation id). The
wire format for programs in other languages is `docs/bus-protocol.md`.
"""

from bus.backend import Bus, Claims, Delivery, Received, Record, Retention, Settlement
from bus.deadletter import DeadLetter, fetch_dead_letters
from bus.delivery import DeliveryConfig, DeliveryStats
from bus.events import BusEvent, fetch_events
from bus.mailbox import Envelope, Handler, Mailbox
from bus.memory import InMemoryBus
from bus.message import ANY_AGENT, BROADCAST, WIRE_VERSION, AgentMessage, MalformedMessage
from bus.policy import AuditRecord, CommandPolicy, fetch_audit, fetch_policy, store_policy
from bus.redis_streams import RedisBus
from bus.registry import AgentCard, Registry
from bus.requests import Requester, RequestStats
from bus.sdk import ContainerAgent, Reply

__all__ = [
    "ANY_AGENT",
    "BROADCAST",
    "WIRE_VERSION",
    "AgentCard",
    "AgentMessage",
    "AuditRecord",
    "Bus",
    "BusEvent",
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
    "Mailbox",
    "MalformedMessage",
    "Received",
    "Record",
    "RedisBus",
    "Registry",
    "Reply",
    "RequestStats",
    "Requester",
    "Retention",
    "Settlement",
    "fetch_audit",
    "fetch_dead_letters",
    "fetch_events",
    "fetch_policy",
    "store_policy",
]
