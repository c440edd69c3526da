"""Looking into a bus for its operators: which streams a workspace has, their groups, lag and pending.

This is apart from the `Bus` protocol on purpose. Delivery never needs it, and not every backend can
answer it the same way: Redis (XINFO, XPENDING, SCAN) and the in-memory bus know every pending entry's
consumer and delivery count, NATS JetStream (bus/nats/inspection.py) knows a group's counts and
sequence floors only, and says None where it cannot tell. A backend without `Inspectable` is refused
by `inspector` in one line instead of failing halfway.

It lives beside `Bus` (backend.py) rather than in `ops/` because it is an optional part of the backend
interface: the backends implement it and build its types, while `ops/` (find, replay, stats, metrics)
only calls it. So no backend imports the operator's tools.

Lag is what a consumer group has still to read: entries added after its last delivered one. Pending
entries were handed out and not acknowledged yet. Together they are a group's backlog.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from bus.backend import Bus, parse_entry_id
from engine.errors import ConfigError


class ConsumerInfo(BaseModel):
    """One consumer of a group."""

    model_config = ConfigDict(frozen=True)

    name: str
    #: Entries handed to this consumer and not acknowledged yet.
    pending: int
    #: Milliseconds since this consumer last read or claimed.
    idle_ms: int


class GroupInfo(BaseModel):
    """One consumer group of a stream."""

    model_config = ConfigDict(frozen=True)

    name: str
    consumers: list[ConsumerInfo]
    pending: int
    last_delivered_id: str
    #: Entries not yet read by the group; None when the backend cannot tell (Redis after deletions).
    lag: int | None


class StreamInfo(BaseModel):
    """A stream's size and groups."""

    model_config = ConfigDict(frozen=True)

    stream: str
    length: int
    first_id: str | None
    last_id: str | None
    groups: list[GroupInfo]


class PendingEntry(BaseModel):
    """An entry handed out to a consumer and not acknowledged yet.

    None where the backend cannot tell: NATS knows neither which consumer holds an entry nor how
    often it was handed out.
    """

    model_config = ConfigDict(frozen=True)

    entry_id: str
    consumer: str | None
    idle_ms: int | None
    #: How many times it was handed out so far.
    deliveries: int | None


@runtime_checkable
class Inspectable(Protocol):
    """A bus that can list its streams and describe them (Redis, in-memory, NATS)."""

    name: str

    async def list_streams(self, prefix: str) -> list[str]:
        """The names of all streams whose key starts with `prefix`, sorted."""
        ...

    async def stream_info(self, stream: str) -> StreamInfo | None:
        """The stream's length, ends and groups; None when it does not exist."""
        ...

    async def pending_entry(self, stream: str, group: str, entry_id: str) -> PendingEntry | None:
        """The entry's pending state in the group; None when it is not pending there."""
        ...


def inspector(bus: Bus, *, what: str) -> Inspectable:
    """The bus as an `Inspectable`, or a `ConfigError` naming what needed it.

    Raises:
        ConfigError: the backend cannot be inspected.
    """
    if isinstance(bus, Inspectable):
        return bus
    raise ConfigError(
        f"{what} needs stream inspection, which the {bus.name} bus does not offer yet; "
        "run it against a Redis bus (ROUNDTABLE_BUS_URL=redis://...)"
    )


@runtime_checkable
class TimeSeekable(Protocol):
    """A bus whose entry ids are not times (NATS), which can find where a time falls in a stream."""

    async def id_before_time(self, stream: str, at: datetime) -> str | None:
        """The id of the entry before the first one added at `at` or later; None when there is none."""
        ...


async def id_before_time(bus: Inspectable, stream: str, at: datetime) -> str | None:
    """What to read after so that reading starts at the first entry added at `at` or later."""
    if isinstance(bus, TimeSeekable):
        return await bus.id_before_time(stream, at)
    return entry_id_before(f"{max(0, int(at.timestamp() * 1000))}-0")


def entry_time(entry_id: str) -> datetime | None:
    """When an entry was added, from its id (Redis and in-memory ids begin with the epoch milliseconds).

    None for an id that is not a time: NATS numbers its entries instead.
    """
    ms, _ = parse_entry_id(entry_id)
    if ms < 10**11:  # before 1973: a sequence number, not a time
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def entry_id_before(entry_id: str) -> str | None:
    """The greatest id below `entry_id`, so that reading "after" it starts at `entry_id` itself.

    None when nothing can come before it (0-0).
    """
    ms, seq = parse_entry_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return f"{ms - 1}-{2**64 - 1}"
    return None
