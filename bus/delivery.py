"""Delivery settings of a workspace's mailboxes, the counters they keep, and what a handler is handed.

The defaults suit LLM agents: a turn may take a minute, so a message is reclaimed from a silent
consumer only after `idle_timeout_s` without a heartbeat (a live consumer renews it every third of
that), and an inbox keeps 100,000 entries per lane, enough for a stopped agent to catch up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from bus.backend import Delivery, Retention
from bus.message import AgentMessage


class DeliveryConfig(BaseModel):
    """How mailboxes deliver: retention, reclaim, dead-lettering, deduplication and batching."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: How much of each inbox lane is kept. Entries trimmed before delivery are counted and logged.
    retention: Retention = Retention(maxlen=100_000)
    #: A pending message silent this long (no heartbeat) is reclaimed by another consumer.
    idle_timeout_s: float = Field(default=30.0, gt=0)
    #: After this many deliveries without success a message moves to the dead letters.
    max_deliveries: int = Field(default=5, ge=1)
    #: How long a handled message id is remembered, so a duplicate of it is skipped.
    dedup_window_s: float = Field(default=300.0, gt=0)
    #: Most messages taken in one read; lower it for slow handlers, so that other consumers (and
    #: higher-priority messages) are not held behind one consumer's backlog.
    batch: int = Field(default=100, ge=1)
    #: Longest a read waits for a message before looking again.
    block_ms: int = Field(default=1000, ge=1)
    dead_letter_retention: Retention = Retention(maxlen=100_000)
    audit_retention: Retention = Retention(maxlen=10_000)
    #: How long a sender trusts its copy of the member list for direct messages (a miss re-reads it).
    members_cache_s: float = Field(default=2.0, ge=0)

    @property
    def idle_timeout_ms(self) -> int:
        return max(1, int(self.idle_timeout_s * 1000))

    @property
    def lease_ms(self) -> int:
        """A claim's lease: a little under the idle timeout, so it has lapsed when a reclaim comes."""
        return max(1, int(self.idle_timeout_ms * 0.9))

    @property
    def dedup_window_ms(self) -> int:
        return max(1, int(self.dedup_window_s * 1000))

    @property
    def heartbeat_s(self) -> float:
        return self.idle_timeout_s / 3


@dataclass(slots=True)
class DeliveryStats:
    """What a mailbox did, counted since it was made (`bus/ops/metrics.py` exports them to Prometheus)."""

    sent: int = 0
    received: int = 0
    handled: int = 0
    #: Redeliveries and duplicates skipped because their message id was handled already.
    duplicates: int = 0
    #: Handler failures (each one; a message may fail several times before it is dead-lettered).
    failed: int = 0
    reclaimed: int = 0
    #: Dead letters written, by reason.
    dead_lettered: Counter[str] = field(default_factory=Counter)
    #: Commands refused, at send and at receive.
    refused: int = 0
    #: Entries trimmed away by retention before this mailbox's group was handed them.
    trimmed: int = 0


Handler = Callable[[AgentMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message handed to this mailbox to handle, and the delivery it came in."""

    message: AgentMessage
    delivery: Delivery

    @property
    def deliveries(self) -> int:
        """How many times it was handed out, this time included."""
        return self.delivery.deliveries

    @property
    def key(self) -> tuple[str, str]:
        return self.delivery.stream, self.delivery.entry_id


Outcome = tuple[Envelope, BaseException | None]
