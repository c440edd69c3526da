"""A workspace's dead letters, for its operator: listed, shown in full, and replayed.

What a dead letter is, and how the delivery layer writes one, is `bus/deadletter.py`; this module only
reads them and sends their messages again.

Replaying a dead letter sends its original message again, as a new entry in the inbox lane it came
from, so it starts over with a delivery count of 1 (the same message id: a recipient that has handled
it meanwhile skips it as a duplicate). The dead letter itself is kept, for the audit trail, and
marked replayed in the table `rt:{ws}:dlq:replayed` (dead letter id -> when, and the new entry), so
that replaying everything twice sends nothing twice. It is marked after the message is sent: a crash
in between can send it once more, never lose it. A letter is skipped, with the reason, when there is
nothing to send (a malformed entry), when its ttl has passed (it would only be dead-lettered again),
or when it names a stream that is not an inbox of the workspace.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bus.addressing import dlq_key, dlq_replayed_key, inbox_lanes
from bus.backend import Bus, parse_entry_id
from bus.deadletter import DeadLetter, DeadReason
from bus.delivery import DeliveryConfig
from bus.inspection import entry_id_before
from bus.message import AgentMessage, MalformedMessage
from bus.ops.scan import PAGE, scan
from engine.errors import BadRequest, InvalidArgument


class ReplayMark(BaseModel):
    """When a dead letter was replayed, and the entry its message was sent again as."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    stream: str
    entry_id: str


class DeadLetterRow(BaseModel):
    """A dead letter as listed: its id in the dead-letter stream, and what it says."""

    model_config = ConfigDict(frozen=True)

    id: str
    at: datetime
    reason: DeadReason
    detail: str
    deliveries: int
    agent: str
    group: str
    stream: str
    entry_id: str
    message_id: str
    replayed: ReplayMark | None = None

    @classmethod
    def of(cls, letter_id: str, letter: DeadLetter, mark: ReplayMark | None) -> DeadLetterRow:
        return cls(
            id=letter_id,
            at=letter.at,
            reason=letter.reason,
            detail=letter.detail,
            deliveries=letter.deliveries,
            agent=letter.agent,
            group=letter.group,
            stream=letter.stream,
            entry_id=letter.entry_id,
            message_id=letter.message_id,
            replayed=mark,
        )


class DeadLetterPage(BaseModel):
    """The newest dead letters, oldest first, and how many the stream holds."""

    total: int
    letters: list[DeadLetterRow]
    #: Entries of the shown range that are not dead letters (another program wrote them there).
    unreadable: list[str] = []


class DeadLetterView(DeadLetterRow):
    """One dead letter in full: the original entry's fields, and its message when it is readable."""

    original: dict[str, str]
    message: dict[str, Any] | None
    #: Why `message` is None.
    unreadable: str | None = None


class ReplayOutcome(BaseModel):
    """What replaying one dead letter did."""

    id: str
    message_id: str
    status: Literal["replayed", "skipped"]
    #: Why it was skipped; empty when replayed.
    reason: str = ""
    stream: str
    #: The new entry, when replayed.
    entry_id: str | None = None


class DeadLetters:
    """The dead letters of one workspace on a bus."""

    def __init__(self, bus: Bus, workspace: str, *, config: DeliveryConfig | None = None) -> None:
        self.bus = bus
        self.workspace = workspace
        #: A replayed message is kept like any inbox entry: under the delivery's retention.
        self._config = config or DeliveryConfig()

    async def newest(self, *, limit: int = 20) -> DeadLetterPage:
        """The newest `limit` dead letters, oldest first.

        Raises:
            InvalidArgument: `limit` is below 1.
        """
        if limit < 1:
            raise InvalidArgument("limit", problem=f"must be 1 or more, got {limit}")
        newest: deque[tuple[str, dict[str, str]]] = deque(maxlen=limit)
        async for row in scan(self.bus, dlq_key(self.workspace)):
            newest.append(row)
        marks = await self._marks()
        page = DeadLetterPage(total=await self.bus.length(dlq_key(self.workspace)), letters=[])
        for letter_id, fields in newest:
            try:
                page.letters.append(
                    DeadLetterRow.of(letter_id, DeadLetter.from_fields(fields), marks.get(letter_id))
                )
            except BadRequest:
                page.unreadable.append(letter_id)
        return page

    async def show(self, ref: str) -> DeadLetterView:
        """One dead letter, by its id in the dead-letter stream, or by its message id (the newest).

        Raises:
            BadRequest: no dead letter has that id.
        """
        letter_id, letter = await self._find(ref)
        marks = await self._marks()
        row = DeadLetterRow.of(letter_id, letter, marks.get(letter_id))
        original: dict[str, str] = json.loads(letter.original)
        try:
            message: dict[str, Any] | None = letter.message().model_dump(mode="json")
            unreadable = None
        except MalformedMessage as exc:
            message, unreadable = None, str(exc)
        return DeadLetterView(**row.model_dump(), original=original, message=message, unreadable=unreadable)

    async def replay(self, ref: str) -> ReplayOutcome:
        """Send one dead letter's message again (see the module docstring).

        Raises:
            BadRequest: no dead letter has that id.
        """
        letter_id, letter = await self._find(ref)
        [outcome] = await self._replay([(letter_id, letter)], await self._marks())
        return outcome

    async def replay_all(self) -> list[ReplayOutcome]:
        """Send every dead letter's message again, except those replayed before or not replayable."""
        marks = await self._marks()
        outcomes: list[ReplayOutcome] = []
        batch: list[tuple[str, DeadLetter]] = []
        async for letter_id, fields in scan(self.bus, dlq_key(self.workspace)):
            try:
                batch.append((letter_id, DeadLetter.from_fields(fields)))
            except BadRequest as exc:
                outcomes.append(
                    ReplayOutcome(
                        id=letter_id,
                        message_id=fields.get("message_id", ""),
                        status="skipped",
                        reason=str(exc),
                        stream=fields.get("stream", ""),
                    )
                )
            if len(batch) >= PAGE:
                outcomes += await self._replay(batch, marks)
                batch = []
        outcomes += await self._replay(batch, marks)
        return outcomes

    async def _replay(
        self, letters: Sequence[tuple[str, DeadLetter]], marks: dict[str, ReplayMark]
    ) -> list[ReplayOutcome]:
        outcomes: list[ReplayOutcome] = []
        sends: list[tuple[int, str, AgentMessage]] = []
        for letter_id, letter in letters:
            skipped = ReplayOutcome(
                id=letter_id, message_id=letter.message_id, status="skipped", stream=letter.stream
            )
            mark = marks.get(letter_id)
            if mark is not None:
                reason = f"replayed already, at {mark.at.isoformat()} as entry {mark.entry_id}"
                outcomes.append(skipped.model_copy(update={"reason": reason}))
                continue
            if letter.stream not in inbox_lanes(self.workspace, letter.agent):
                reason = (
                    f"its stream {letter.stream} is not an inbox lane of {letter.agent!r} in this workspace"
                )
                outcomes.append(skipped.model_copy(update={"reason": reason}))
                continue
            try:
                message = letter.message()
            except MalformedMessage as exc:
                reason = f"the original entry is not a message ({exc})"
                outcomes.append(skipped.model_copy(update={"reason": reason}))
                continue
            if message.is_expired():
                assert message.ttl is not None
                ended = message.timestamp + timedelta(seconds=message.ttl)
                reason = f"its ttl passed at {ended.isoformat()}; it would only be dead-lettered again"
                outcomes.append(skipped.model_copy(update={"reason": reason}))
                continue
            sends.append((len(outcomes), letter_id, message))
            outcomes.append(skipped)  # replaced below once sent
        if not sends:
            return outcomes
        entry_ids = await self.bus.publish_many(
            [(outcomes[index].stream, message) for index, _, message in sends],
            retention=self._config.retention,
        )
        now = datetime.now(UTC)
        new_marks: dict[str, str] = {}
        for (index, letter_id, _), entry_id in zip(sends, entry_ids, strict=True):
            mark = ReplayMark(at=now, stream=outcomes[index].stream, entry_id=entry_id)
            marks[letter_id] = mark
            new_marks[letter_id] = mark.model_dump_json()
            outcomes[index] = outcomes[index].model_copy(update={"status": "replayed", "entry_id": entry_id})
        await self.bus.map_set(dlq_replayed_key(self.workspace), new_marks)
        return outcomes

    async def _find(self, ref: str) -> tuple[str, DeadLetter]:
        stream = dlq_key(self.workspace)
        if _is_entry_id(ref):
            rows = await self.bus.entries(stream, after=entry_id_before(ref), count=1)
            if rows and rows[0][0] == ref:
                return ref, DeadLetter.from_fields(rows[0][1])
        found: tuple[str, DeadLetter] | None = None
        async for letter_id, fields in scan(self.bus, stream):
            if fields.get("message_id") == ref:
                found = (letter_id, DeadLetter.from_fields(fields))  # the newest wins
        if found is not None:
            return found
        raise BadRequest(
            f"no dead letter {ref!r} in workspace {self.workspace!r}; "
            "`roundtable bus dlq list` shows their ids (a message id works too)"
        )

    async def _marks(self) -> dict[str, ReplayMark]:
        table = await self.bus.map_get(dlq_replayed_key(self.workspace))
        return {letter_id: ReplayMark.model_validate_json(mark) for letter_id, mark in table.items()}


def _is_entry_id(text: str) -> bool:
    try:
        parse_entry_id(text)
    except BadRequest:
        return False
    return True
