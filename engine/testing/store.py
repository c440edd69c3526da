"""`InMemoryStore`: the session event log in memory, keeping the contract of `SessionStore`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import TypeAdapter

from engine.errors import SessionNotFound, StoreUnavailable
from engine.events import SessionEvent, SessionStarted

_EVENTS: TypeAdapter[list[SessionEvent]] = TypeAdapter(list[SessionEvent])

EventMatch = Callable[[SessionEvent], bool]


@dataclass
class _Fault:
    match: EventMatch
    error: BaseException
    left: int


class InMemoryStore:
    """A `SessionStore` in a dict, for tests of the engine.

    It keeps what the SQL store promises: `append` is idempotent per event key (kind, step, agent)
    and returns False for a key already stored; only `SessionStarted` may open a session
    (`SessionNotFound` otherwise). Events are kept as their JSON form and validated again on load,
    so an event that would not survive the real database does not survive here either.

    `fail_on` makes appends raise, as a database that goes away mid-step does.
    """

    def __init__(self) -> None:
        self._payloads: dict[str, list[object]] = {}
        self._keys: dict[str, set[tuple[str, str, str]]] = {}
        self._faults: list[_Fault] = []
        #: Every append attempted, stored or not: (session id, event key, stored).
        self.appends: list[tuple[str, tuple[str, str, str], bool]] = []

    async def append(self, session_id: str, event: SessionEvent) -> bool:
        self._raise_fault(event)
        if session_id not in self._payloads and not isinstance(event, SessionStarted):
            raise SessionNotFound(
                f"no session '{session_id}' to append {event.key[0]} to; append its session_started first"
            )
        keys = self._keys.setdefault(session_id, set())
        stored = event.key not in keys
        if stored:
            keys.add(event.key)
            self._payloads.setdefault(session_id, []).append(event.model_dump(mode="json"))
        self.appends.append((session_id, event.key, stored))
        return stored

    async def load_events(self, session_id: str) -> list[SessionEvent]:
        return self.get_events(session_id)

    def get_events(self, session_id: str) -> list[SessionEvent]:
        """The session's events in append order, read without awaiting (for assertions)."""
        return _EVENTS.validate_python(self._payloads.get(session_id, []))

    def fail_on(self, match: EventMatch, *, error: BaseException | None = None, times: int = 1) -> None:
        """Make the next `times` appends of an event that `match`es raise `error`, storing nothing.

        Args:
            match: picks the events, e.g. `lambda e: e.key == ("turn_completed", "round-2", "skeptic")`.
            error: what to raise; by default `StoreUnavailable`, as when the database goes away.
            times: how many matching appends fail before the store works again.
        """
        self._faults.append(
            _Fault(match, error or StoreUnavailable("the in-memory store was told to fail"), times)
        )

    def _raise_fault(self, event: SessionEvent) -> None:
        for fault in self._faults:
            if fault.left > 0 and fault.match(event):
                fault.left -= 1
                raise fault.error
