"""The `Bus` interface every backend implements, and the helpers they share.

The interface is ours, not a library's, so Redis Streams, NATS JetStream and the in-memory bus are
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

On top of these, the delivery layer (`bus/mailbox.py`) needs a few batch operations, each one round trip:

- `receive` reads several streams in the order given (priority lanes, highest first), so an entry in
  an earlier stream is always handed out before one waiting in a later stream. It also takes an
  idempotency claim on each entry's message id (`Claims`), and counts entries that retention trimmed
  away before the group was handed them, so none is lost silently.
- `settle` writes a batch's outcome at once: dead letters and audit records appended, message ids
  marked done, claims released, entries acknowledged.
- `touch` tells the backend that entries are still being worked on (a heartbeat), so a slow handler
  is not mistaken for a dead one and reclaimed.
- `map_*` hold small shared tables: the workspace's members, topic subscribers, the command policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from bus.message import AgentMessage
from engine.errors import BadRequest

#: Prefix of every key RoundTable writes, so a shared Redis can tell its keys apart.
KEY_PREFIX = "rt"
#: The value of a claim whose message was handled (a claim otherwise holds its owner's name).
DONE = "+done"

EntryId = tuple[int, int]

#: What a claim found for an entry's message id: "new" (claimed now, or already by this consumer:
#: run it), "done" (handled before: acknowledge it without running), "busy" (another consumer holds
#: it: leave it pending).
ClaimStatus = Literal["new", "done", "busy"]


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
    #: The idempotency claim on the message id; always "new" when no `Claims` were asked for.
    status: ClaimStatus = "new"
    #: The entry's fields as stored, kept for dead letters (a malformed entry has nothing else).
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a stream is kept: the newest `maxlen` entries, or those younger than `max_age_ms`.

    Trimming is approximate on Redis (whole internal nodes, so a little more is kept) and exact in
    memory. Entries trimmed before a group read them are counted by `receive`, never dropped silently.
    """

    maxlen: int | None = None
    max_age_ms: int | None = None

    def __post_init__(self) -> None:
        if self.maxlen is not None and self.max_age_ms is not None:
            raise BadRequest("retention is by length or by age, not both; set maxlen or max_age_ms")
        if self.maxlen is not None:
            check_not_negative("maxlen", self.maxlen)
        if self.max_age_ms is not None:
            check_positive("max_age_ms", self.max_age_ms)


@dataclass(frozen=True, slots=True)
class Claims:
    """Idempotency claims on message ids, taken as entries are read.

    A claim is the key `scope + message_id`. Reading an entry sets it to `owner` for `lease_ms`
    unless it is held already; `settle` turns it into `DONE` once the message was handled, or
    releases it when handling failed. One scope per recipient and consumer group, since the same
    message id reaches every recipient of a broadcast.
    """

    scope: str
    owner: str
    lease_ms: int

    def __post_init__(self) -> None:
        if not self.scope or not self.owner:
            raise BadRequest("claims need a non-empty scope and owner")
        check_positive("lease_ms", self.lease_ms)

    def key(self, message_id: str) -> str:
        return self.scope + message_id


@dataclass(slots=True)
class Received:
    """What `receive` or `reclaim` handed out, and what trimming took before it could be."""

    deliveries: list[Delivery] = field(default_factory=list)
    #: Stream -> entries trimmed away before this group was handed them (or while they were pending).
    trimmed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """A raw entry to append (a dead letter, an audit record), with the retention of its stream."""

    stream: str
    fields: Mapping[str, str]
    retention: Retention | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """A batch's outcome, written by `settle` in one step, in this order.

    Records are appended first and acknowledgements come last, so a settlement cut short by a lost
    connection leaves entries pending (delivered again, and skipped as done), never acknowledged
    with their dead letter or done mark missing.
    """

    group: str
    #: Raw entries to append: dead letters, audit records.
    records: Sequence[Record] = ()
    #: Message ids handled: their claims become `DONE` for `done_ms`, so a redelivery is skipped.
    done: Sequence[str] = ()
    #: Message ids whose claims are dropped (if still this owner's), so a redelivery may run them.
    released: Sequence[str] = ()
    #: Stream -> entry ids to acknowledge.
    acks: Mapping[str, Sequence[str]] = field(default_factory=dict)
    claims: Claims | None = None
    done_ms: int = 300_000

    def __post_init__(self) -> None:
        if (self.done or self.released) and self.claims is None:
            raise BadRequest("a settlement that marks or releases message ids needs its claims")
        check_positive("done_ms", self.done_ms)
        for entry_ids in self.acks.values():
            for entry_id in entry_ids:
                parse_entry_id(entry_id)

    def is_empty(self) -> bool:
        return not (self.records or self.done or self.released or any(self.acks.values()))


@runtime_checkable
class Bus(Protocol):
    """A stream bus with consumer groups; see the module docstring for the shared semantics."""

    #: The backend's name: "redis", "nats" or "memory".
    name: str

    async def publish(self, stream: str, message: AgentMessage, *, retention: Retention | None = None) -> str:
        """Append a message and return its entry id; `retention` trims the stream as it grows.

        Raises `BadRequest` when the message is invalid.
        """
        ...

    async def publish_many(
        self, entries: Sequence[tuple[str, AgentMessage]], *, retention: Retention | None = None
    ) -> list[str]:
        """Append messages (stream, message) in one round trip; their entry ids, in order.

        Every message is checked before any is sent, so an invalid one sends nothing.
        """
        ...

    async def append(
        self, stream: str, fields: Mapping[str, str], *, retention: Retention | None = None
    ) -> str:
        """Append a raw entry (a dead letter, an audit record) and return its entry id."""
        ...

    async def entries(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` raw entries in id order, after entry id `after` (from the start when None)."""
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

    async def receive(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int = 1000,
        claims: Claims | None = None,
    ) -> Received:
        """Up to `count` new entries from `streams`, taken in the order given: a later stream is read
        only when the earlier ones have nothing more. Waits like `consume`; creates missing groups.

        With `claims`, each entry's message id is claimed and the outcome is its `status`.
        `trimmed` counts entries trimmed away before this group read them.
        """
        ...

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries, removing them from the group's pending list; returns how many were pending."""
        ...

    async def reclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        count: int = 10,
        claims: Claims | None = None,
    ) -> Received:
        """Take over entries pending longer than `min_idle_ms` (XAUTOCLAIM); counts each as a delivery.

        Pending entries whose stream entry was trimmed are dropped from the pending list and counted
        in `trimmed`. With `claims`, message ids are claimed as in `receive`.
        """
        ...

    async def touch(
        self,
        stream: str,
        group: str,
        consumer: str,
        entry_ids: Sequence[str],
        *,
        claims: Claims | None = None,
        message_ids: Sequence[str] = (),
    ) -> None:
        """Reset the idle time of pending entries (not their delivery count), and renew their claims
        for another lease (never shortening one, so a claim settled meanwhile keeps its done mark)."""
        ...

    async def settle(self, settlement: Settlement) -> None:
        """Write a batch's outcome in one step; see `Settlement`."""
        ...

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not yet acknowledged."""
        ...

    async def length(self, stream: str) -> int:
        """Entries in the stream; 0 when it does not exist."""
        ...

    async def map_set(self, key: str, fields: Mapping[str, str]) -> None:
        """Set fields of a small shared table (a Redis hash)."""
        ...

    async def map_remove(self, key: str, *names: str) -> None:
        """Remove fields of a table; missing ones are ignored."""
        ...

    async def map_get(self, key: str) -> dict[str, str]:
        """All fields of a table; {} when it does not exist."""
        ...

    async def delete(self, *keys: str) -> None:
        """Delete streams (with their groups) or tables; missing ones are ignored."""
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


def check_streams(streams: Sequence[str]) -> None:
    """Validate the streams of a `receive`: one or more, each named once."""
    if not streams or not all(streams):
        raise BadRequest(f"streams {list(streams)!r} must be one or more non-empty names")
    if len(set(streams)) != len(streams):
        raise BadRequest(f"streams {list(streams)!r} name a stream twice; name each once")


def check_receive(
    streams: Sequence[str], consumer: str, count: int, block_ms: int, claims: Claims | None
) -> None:
    """The argument checks every backend's `receive` makes, in one place."""
    check_streams(streams)
    check_positive("count", count)
    check_not_negative("block_ms", block_ms)
    check_owner(claims, consumer)


def check_owner(claims: Claims | None, consumer: str) -> None:
    """Claims taken while reading belong to the reading consumer."""
    if claims is not None and claims.owner != consumer:
        raise BadRequest(f"claims owner {claims.owner!r} must be the reading consumer {consumer!r}")
