"""Dead letters: messages that will not be handled, kept in the workspace's `rt:{ws}:dlq` stream.

A message is dead-lettered, with its reason and delivery count, when:

- `malformed`: its entry is not a readable `AgentMessage` (the reason says why);
- `expired`: its ttl passed before it was handled;
- `handler_failed`: its handler raised on each of its `max_deliveries` deliveries;
- `max_deliveries`: it was handed out `max_deliveries` times and never settled (its consumers died).

The original entry is kept verbatim (`original`, the entry's fields as JSON), so a dead letter can be
inspected, and a well-formed one sent again once its cause is fixed (`DeadLetter.message`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bus.addressing import dlq_key
from bus.backend import Bus, Delivery, Record, Retention
from bus.message import AgentMessage, MalformedMessage, describe_error
from engine.errors import BadRequest

DeadReason = Literal["malformed", "expired", "handler_failed", "max_deliveries"]


class DeadLetter(BaseModel):
    """One dead letter, as kept in the workspace's dead-letter stream."""

    model_config = ConfigDict(frozen=True)

    reason: DeadReason
    detail: str
    #: How many times the message was handed out before it was given up.
    deliveries: int
    at: datetime
    agent: str
    group: str
    #: The inbox stream and entry it came from.
    stream: str
    entry_id: str
    #: The message id, when the entry was readable enough to have one.
    message_id: str = ""
    #: The entry's fields, verbatim, as JSON.
    original: str

    @classmethod
    def of(
        cls, delivery: Delivery, *, reason: DeadReason, detail: str, deliveries: int, agent: str, group: str
    ) -> DeadLetter:
        message_id = delivery.message.message_id if delivery.message else delivery.raw.get("id", "")
        return cls(
            reason=reason,
            detail=detail,
            deliveries=deliveries,
            at=datetime.now(UTC),
            agent=agent,
            group=group,
            stream=delivery.stream,
            entry_id=delivery.entry_id,
            message_id=message_id,
            original=json.dumps(dict(delivery.raw), ensure_ascii=False, sort_keys=True),
        )

    def record(self, workspace: str, retention: Retention | None) -> Record:
        fields = {name: str(value) for name, value in self.model_dump(mode="json").items()}
        return Record(dlq_key(workspace), fields, retention)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> DeadLetter:
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise BadRequest(f"not a dead letter: {describe_error(exc)}") from None

    def message(self) -> AgentMessage:
        """The original message, to send again once the cause is fixed.

        Raises:
            MalformedMessage: the original entry was not a readable message (reason `malformed`).
        """
        try:
            fields = json.loads(self.original)
        except ValueError:
            raise MalformedMessage("the dead letter's original entry is not JSON") from None
        return AgentMessage.from_fields(fields)


async def fetch_dead_letters(
    bus: Bus, workspace: str, *, after: str | None = None, count: int = 100
) -> list[tuple[str, DeadLetter]]:
    """Dead letters (entry id, letter) in order, after entry id `after`."""
    rows = await bus.entries(dlq_key(workspace), after=after, count=count)
    return [(entry_id, DeadLetter.from_fields(fields)) for entry_id, fields in rows]
