"""The workspace's events stream, `rt:{ws}:events`: who joined, left, went silent, and what was dead-lettered.

Anyone may read it: a program with `fetch_events`, following the entry ids, or an operator with
`roundtable bus replay events`. Each entry is flat text fields, so a program in another language reads
it as it is:

| field | holds |
| --- | --- |
| `kind` | `joined`, `left`, `status` or `dead_letter` |
| `agent` | the agent the event is about |
| `status` | the agent's status after the event (`online`, `offline`); for a dead letter, its reason |
| `at` | when, ISO 8601 in UTC |
| `detail` | one line for people |
| `instance` | the registration (worker process) the event concerns; empty when none |
| `message_id` | for a dead letter, the message's id |

Events are written at least once: two processes sweeping at the same moment may both report the same
status change, so a reader keys what it shows by agent, not by event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bus.backend import Bus, Record, Retention, stream_key
from bus.deadletter import DeadLetter
from bus.message import describe_error
from engine.errors import BadRequest

EventKind = Literal["joined", "left", "status", "dead_letter"]
#: The events stream keeps its newest entries only: it tells what happens, the registry what is.
EVENTS_RETENTION = Retention(maxlen=10_000)


def events_key(workspace: str) -> str:
    """The workspace's events stream: `rt:{ws}:events`."""
    return stream_key(workspace, "events")


class BusEvent(BaseModel):
    """One entry of the events stream."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: EventKind
    agent: str
    status: str
    at: datetime
    detail: str = ""
    instance: str = ""
    message_id: str = ""

    @classmethod
    def now(
        cls, kind: EventKind, agent: str, status: str, detail: str = "", *, instance: str = ""
    ) -> BusEvent:
        return cls(
            kind=kind, agent=agent, status=status, at=datetime.now(UTC), detail=detail, instance=instance
        )

    @classmethod
    def of_dead_letter(cls, letter: DeadLetter) -> BusEvent:
        detail = f"{letter.reason} after {letter.deliveries} deliveries: {letter.detail}"
        return cls(
            kind="dead_letter",
            agent=letter.agent,
            status=letter.reason,
            at=letter.at,
            detail=detail,
            message_id=letter.message_id,
        )

    def fields(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.model_dump(mode="json").items()}

    def record(self, workspace: str, retention: Retention | None = EVENTS_RETENTION) -> Record:
        return Record(events_key(workspace), self.fields(), retention)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> BusEvent:
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise BadRequest(f"not a bus event: {describe_error(exc)}") from None


async def publish_event(bus: Bus, workspace: str, event: BusEvent) -> str:
    """Append an event to the workspace's events stream; its entry id."""
    record = event.record(workspace)
    return await bus.append(record.stream, record.fields, retention=record.retention)


async def fetch_events(
    bus: Bus, workspace: str, *, after: str | None = None, count: int = 100
) -> list[tuple[str, BusEvent]]:
    """Events (entry id, event) in order, after entry id `after` (from the oldest kept when None)."""
    rows = await bus.entries(events_key(workspace), after=after, count=count)
    return [(entry_id, BusEvent.from_fields(fields)) for entry_id, fields in rows]
