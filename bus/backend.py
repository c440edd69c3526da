"""The `Bus` interface every backend implements, and the helpers they share.

The interface is ours, not a library's, so Redis Streams, the in-memory bus (and later NATS) are
interchangeable; `tests/bus/test_contract.py` is the one suite they all pass. Its semantics are those
of Redis Streams consumer groups, since that is the backend it is shaped after:

- `publish` appends to a stream; every consumer group on it sees every entry.
- Within a group each entry goes to one consumer, and stays pending until it is acknowledged.
- An entry pending longer than `min_idle_ms` can be taken over by another consumer with `reclaim`;
  its delivery count tells how often it was handed out, so a caller can dead-letter poison entries.
- A group that does not exist yet is created by `consume` (from the start of the stream), so a worker
  heals by itself when its stream was deleted; `reclaim` and `pending_count` find nothing pending there.
- A malformed entry is delivered as a `Delivery` with `message=None` and the reason in `error`.
- Every failure to reach the backend raises `BusUnavailable`; bad arguments raise `BadRequest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bus.message import AgentMessage
from engine.errors import BadRequest

#: Prefix of every key RoundTable writes, so a shared Redis can tell its keys apart.
KEY_PREFIX = "rt"

EntryId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to a consumer.

    `message` is None and `error` says why when the entry was malformed; acknowledge such entries
    (or dead-letter them) like any other, or they are delivered again.
    """

    stream: str
    entry_id: str
    message: AgentMessage | None
    error: str | None
    #: How many times the entry was handed out, this time included: 1 on first delivery.
    deliveries: int


@runtime_checkable
class Bus(Protocol):
    """A stream bus with consumer groups; see the module docstring for the shared semantics."""

    #: The backend's name: "redis" or "memory".
    name: str

    async def publish(self, stream: str, message: AgentMessage, *, maxlen: int | None = None) -> str:
        """Append a message and return its entry id; `maxlen` trims the oldest entries (approximately).

        Raises `BadRequest` when the message is invalid.
        """
        ...

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        """Create a consumer group (and the stream) unless it exists; `start` is "0", "$" or an entry id."""
        ...

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int = 10, block_ms: int = 1000
    ) -> list[Delivery]:
        """New entries for this group, waiting up to `block_ms` for one; [] when none came.

        `block_ms=0` does not wait. A backend may return [] before `block_ms` has passed.
        """
        ...

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries, removing them from the group's pending list; returns how many were pending."""
        ...

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[Delivery]:
        """Take over entries pending longer than `min_idle_ms` (XAUTOCLAIM); counts each as a delivery.

        Pending entries whose stream entry was trimmed or deleted are dropped, not returned.
        """
        ...

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not yet acknowledged."""
        ...

    async def length(self, stream: str) -> int:
        """Entries in the stream; 0 when it does not exist."""
        ...

    async def delete(self, *streams: str) -> None:
        """Delete streams with their groups; missing ones are ignored."""
        ...

    async def ping(self) -> None:
        """Return when the backend answers; raise `BusUnavailable` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent; a closed bus raises `BusUnavailable` when used."""
        ...


def stream_key(workspace: str, *parts: str) -> str:
    """The key of a stream in a workspace, e.g. `rt:{default}:agent:analyst`.

    The workspace is a Redis Cluster hash tag, so all of a workspace's streams live on one shard and
    a script or transaction may span them.
    """
    if not workspace or "{" in workspace or "}" in workspace:
        raise BadRequest(f"workspace {workspace!r} cannot name a stream; use a non-empty id without braces")
    if not parts or not all(parts):
        raise BadRequest(f"stream key parts {list(parts)!r} must be one or more non-empty strings")
    return ":".join((KEY_PREFIX, f"{{{workspace}}}", *parts))


def parse_entry_id(entry_id: str) -> EntryId:
    """An entry id "<ms>-<seq>" (or "<ms>") as a comparable pair; raises `BadRequest` otherwise."""
    ms, sep, seq = entry_id.partition("-")
    if not _digits(ms) or (sep and not _digits(seq)):
        raise BadRequest(f"entry id {entry_id!r} is not a stream id; use '<ms>-<seq>', e.g. '0-0'")
    return int(ms), int(seq) if sep else 0


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def check_start(start: str) -> None:
    """Validate a consumer group start: "$", or an entry id such as "0"."""
    if start != "$":
        parse_entry_id(start)


def check_positive(name: str, value: int) -> None:
    if value < 1:
        raise BadRequest(f"{name} must be 1 or more, got {value}")


def check_not_negative(name: str, value: int) -> None:
    if value < 0:
        raise BadRequest(f"{name} must be 0 or more, got {value}")
