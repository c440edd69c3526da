"""Operating the bus: dead letters listed, shown and replayed; a message found by id; a stream read
back for audit; per-stream statistics. `roundtable bus ...` renders what this returns.

Replaying a dead letter sends its original message again, as a new entry in the inbox lane it came
from, so it starts over with a delivery count of 1 (the same message id: a recipient that has handled
it meanwhile skips it as a duplicate). The dead letter itself is kept, for the audit trail, and
marked replayed in the table `rt:{ws}:dlq:replayed` (dead letter id -> when, and the new entry), so
that replaying everything twice sends nothing twice. It is marked after the message is sent: a crash
in between can send it once more, never lose it. A letter is skipped, with the reason, when there is
nothing to send (a malformed entry), when its ttl has passed (it would only be dead-lettered again),
or when it names a stream that is not an inbox of the workspace.

Everything else here only reads.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bus.addressing import audit_key, dlq_key, dlq_replayed_key, inbox_lanes
from bus.backend import Bus, parse_entry_id, stream_key
from bus.deadletter import DeadLetter, DeadReason
from bus.delivery import DeliveryConfig
from bus.events import events_key
from bus.message import AgentMessage, MalformedMessage
from bus.inspection import GroupInfo, Inspectable, entry_id_before, entry_time, id_before_time, inspector
from engine.errors import BadRequest

#: Entries read per round trip while scanning a stream.
_PAGE = 500
#: Streams described at once by `stats`.
_FAN_OUT = 32
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


EntryKind = Literal["message", "dead_letter", "audit", "event", "record"]


class GroupState(BaseModel):
    """Where an entry stands in one consumer group."""

    group: str
    state: Literal["waiting", "pending", "acknowledged"]
    consumer: str | None = None
    deliveries: int | None = None


class FoundEntry(BaseModel):
    """A stream entry about a message id: the message itself, its dead letter, an audit record..."""

    stream: str
    entry_id: str
    at: datetime | None
    kind: EntryKind
    fields: dict[str, str]
    #: For a message in a stream with consumer groups, where it stands in each.
    groups: list[GroupState] = []


class StreamEntry(BaseModel):
    """An entry read back from a stream, with its message when it holds one."""

    entry_id: str
    at: datetime | None
    fields: dict[str, str]
    message: dict[str, Any] | None = None


class StreamStats(BaseModel):
    """One stream of the workspace: its length and its consumer groups."""

    stream: str
    length: int
    groups: list[GroupInfo]

    @property
    def pending(self) -> int:
        return sum(g.pending for g in self.groups)


class BusOps:
    """The operator's view of one workspace on a bus."""

    def __init__(
        self, bus: Bus, workspace: str, *, description: str = "", config: DeliveryConfig | None = None
    ) -> None:
        self.bus = bus
        self.workspace = workspace
        self.description = description or bus.name
        self._config = config or DeliveryConfig()

    # --- dead letters -----------------------------------------------------------------------------

    async def dead_letters(self, *, limit: int = 20) -> DeadLetterPage:
        """The newest `limit` dead letters, oldest first."""
        if limit < 1:
            raise BadRequest(f"--limit must be 1 or more, got {limit}")
        newest: deque[tuple[str, dict[str, str]]] = deque(maxlen=limit)
        async for row in self._scan(dlq_key(self.workspace)):
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

    async def dead_letter(self, ref: str) -> DeadLetterView:
        """One dead letter, by its id in the dead-letter stream, or by its message id (the newest).

        Raises:
            BadRequest: no dead letter has that id.
        """
        letter_id, letter = await self._find_letter(ref)
        marks = await self._marks()
        row = DeadLetterRow.of(letter_id, letter, marks.get(letter_id))
        original: dict[str, str] = json.loads(letter.original)
        try:
            message: dict[str, Any] | None = letter.message().model_dump(mode="json")
            unreadable = None
        except MalformedMessage as exc:
            message, unreadable = None, str(exc)
        return DeadLetterView(**row.model_dump(), original=original, message=message, unreadable=unreadable)

    async def replay_dead_letter(self, ref: str) -> ReplayOutcome:
        """Send one dead letter's message again (see the module docstring)."""
        letter_id, letter = await self._find_letter(ref)
        [outcome] = await self._replay([(letter_id, letter)], await self._marks())
        return outcome

    async def replay_dead_letters(self) -> list[ReplayOutcome]:
        """Send every dead letter's message again, except those replayed before or not replayable."""
        marks = await self._marks()
        outcomes: list[ReplayOutcome] = []
        batch: list[tuple[str, DeadLetter]] = []
        async for letter_id, fields in self._scan(dlq_key(self.workspace)):
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
            if len(batch) >= _PAGE:
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

    async def _find_letter(self, ref: str) -> tuple[str, DeadLetter]:
        stream = dlq_key(self.workspace)
        if _is_entry_id(ref):
            rows = await self.bus.entries(stream, after=entry_id_before(ref), count=1)
            if rows and rows[0][0] == ref:
                return ref, DeadLetter.from_fields(rows[0][1])
        found: tuple[str, DeadLetter] | None = None
        async for letter_id, fields in self._scan(stream):
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

    # --- finding and replaying --------------------------------------------------------------------

    async def find(self, message_id: str) -> list[FoundEntry]:
        """Every entry of the workspace about `message_id`: the message (in each inbox it reached),
        its dead letters, audit records and events. Messages say where they stand in each group.
        """
        if not message_id.strip():
            raise BadRequest("give the message id to find, e.g. 3f2c...; `roundtable bus replay` shows ids")
        inspect = inspector(self.bus, what="bus find")
        found: list[FoundEntry] = []
        for stream in await inspect.list_streams(self._prefix):
            async for entry_id, fields in self._scan(stream):
                if fields.get("id") == message_id or fields.get("message_id") == message_id:
                    found.append(await self._found(inspect, stream, entry_id, fields))
        return found

    async def _found(
        self, inspect: Inspectable, stream: str, entry_id: str, fields: dict[str, str]
    ) -> FoundEntry:
        kind = self._kind(stream, fields)
        groups: list[GroupState] = []
        if kind == "message":
            info = await inspect.stream_info(stream)
            for group in info.groups if info is not None else []:
                pending = await inspect.pending_entry(stream, group.name, entry_id)
                if pending is not None:
                    state = GroupState(
                        group=group.name,
                        state="pending",
                        consumer=pending.consumer,
                        deliveries=pending.deliveries,
                    )
                elif parse_entry_id(entry_id) <= parse_entry_id(group.last_delivered_id):
                    state = GroupState(group=group.name, state="acknowledged")
                else:
                    state = GroupState(group=group.name, state="waiting")
                groups.append(state)
        return FoundEntry(
            stream=stream, entry_id=entry_id, at=entry_time(entry_id), kind=kind, fields=fields, groups=groups
        )

    def _kind(self, stream: str, fields: dict[str, str]) -> EntryKind:
        if stream == dlq_key(self.workspace):
            return "dead_letter"
        if stream == audit_key(self.workspace):
            return "audit"
        if stream == events_key(self.workspace):
            return "event"
        return "message" if "v" in fields and "msg" in fields else "record"

    async def replay(
        self, stream: str, *, start: str | None = None, since: str | None = None, limit: int = 100
    ) -> list[StreamEntry]:
        """Read a stream's entries back, for audit, from entry id `start` (included) or from a time
        (`since`: ISO 8601, or an age such as 90s, 10m, 2h, 1d); from its start when neither is given.
        Nothing is consumed or acknowledged.

        Raises:
            BadRequest: both `start` and `since`, a bad id or time, or a stream the workspace does not have.
        """
        if start is not None and since is not None:
            raise BadRequest("give --from ID or --since TIME, not both")
        if limit < 1:
            raise BadRequest(f"--limit must be 1 or more, got {limit}")
        key = await self._stream(stream)
        after: str | None = None
        if start is not None:
            after = entry_id_before(start)
        elif since is not None:
            at = parse_since(since)
            after = await id_before_time(inspector(self.bus, what="bus replay --since"), key, at)
        rows: list[StreamEntry] = []
        async for entry_id, fields in self._scan(key, after=after):
            rows.append(_stream_entry(entry_id, fields))
            if len(rows) >= limit:
                break
        return rows

    async def _stream(self, name: str) -> str:
        """The key of a stream named in full (`rt:{ws}:...`) or within the workspace (`inbox:analyst:p5`)."""
        if name.startswith("rt:") and not name.startswith(self._prefix):
            raise BadRequest(
                f"stream {name!r} is not in workspace {self.workspace!r}, whose keys start {self._prefix}"
            )
        key = name if name.startswith(self._prefix) else self._prefix + name
        if isinstance(self.bus, Inspectable):
            streams = await self.bus.list_streams(self._prefix)
            if key not in streams:
                shown = [s.removeprefix(self._prefix) for s in streams[:12]]
                more = f" and {len(streams) - 12} more" if len(streams) > 12 else ""
                raise BadRequest(
                    f"no stream {name!r} in workspace {self.workspace!r}; "
                    f"streams: {', '.join(shown) or 'none'}{more}"
                )
        return key

    # --- statistics -------------------------------------------------------------------------------

    async def stats(self, *, include_empty: bool = False) -> list[StreamStats]:
        """Every stream of the workspace with its length and groups (pending, lag, consumers), sorted.

        Streams with no entries and nothing pending are left out unless `include_empty`: each agent
        has ten priority lanes, and most of them are usually empty.
        """
        inspect = inspector(self.bus, what="bus stats")
        streams = await inspect.list_streams(self._prefix)
        infos = []
        for start in range(0, len(streams), _FAN_OUT):
            chunk = streams[start : start + _FAN_OUT]
            infos += await asyncio.gather(*(inspect.stream_info(s) for s in chunk))
        rows = [
            StreamStats(stream=i.stream, length=i.length, groups=i.groups) for i in infos if i is not None
        ]
        return [r for r in rows if include_empty or r.length or r.pending]

    # --- helpers ----------------------------------------------------------------------------------

    @property
    def _prefix(self) -> str:
        """`rt:{ws}:`, the start of every key of the workspace (`stream_key` checks the workspace)."""
        return stream_key(self.workspace, "x")[:-1]

    async def _scan(
        self, stream: str, *, after: str | None = None
    ) -> AsyncIterator[tuple[str, dict[str, str]]]:
        while True:
            rows = await self.bus.entries(stream, after=after, count=_PAGE)
            for row in rows:
                yield row
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]


def _is_entry_id(text: str) -> bool:
    try:
        parse_entry_id(text)
    except BadRequest:
        return False
    return True


def _stream_entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    message: dict[str, Any] | None = None
    if "v" in fields and "msg" in fields:
        try:
            message = AgentMessage.from_fields(fields).model_dump(mode="json")
        except MalformedMessage:
            message = None
    return StreamEntry(entry_id=entry_id, at=entry_time(entry_id), fields=fields, message=message)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (UTC when it names no zone), or an age back from now (30s, 10m, 2h, 1d).

    Raises:
        BadRequest: neither.
    """
    current = now or datetime.now(UTC)
    age = _AGE.fullmatch(text.strip())
    if age is not None:
        return current - timedelta(seconds=float(age.group(1)) * _AGE_UNITS[age.group(2)])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"--since {text!r} is not a time; use an ISO time such as 2025-01-31T12:00:00Z "
            "or an age such as 90s, 10m, 2h, 1d"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
