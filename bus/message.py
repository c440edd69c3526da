"""The `AgentMessage` protocol: what every program on the bus sends and reads.

A message travels as one stream entry with a few flat fields (see `AgentMessage.to_fields`). Only the
`v` field is fixed forever: a reader first checks it, and refuses a wire version it does not know,
instead of guessing at fields that may have changed meaning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from engine.errors import BadRequest

#: The wire version this build writes and reads.
WIRE_VERSION = 1

MessageType = Literal["request", "response", "notification", "command"]

#: `to_sandbox` for a message any sandbox may handle.
BROADCAST = "broadcast"
#: `to_agent` for a message any agent may handle.
ANY_AGENT = "any"


class MalformedMessage(BadRequest):
    """A stream entry is not a readable `AgentMessage`; the message says why.

    It is a `BadRequest` because the entry is invalid input from another program on the bus, just as a
    bad REST body is: a side-port that parses raw fields gets its 400 for free. The backends never let it
    escape `consume`: they turn it into a `Delivery` with `message=None` and the reason in `error`, so one
    bad entry cannot stop a worker.
    """


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    """`uuid.uuid4().hex`, without building a `UUID` (which cost a tenth of a send in bench/bus.py).

    16 bytes from the OS's CSPRNG, with the version 4 and RFC 4122 variant bits set, as 32 hex digits.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


class AgentMessage(BaseModel):
    """One message between agents, sandboxes, the engine and outside programs.

    Delivery is at-least-once, so a receiver deduplicates by `message_id`. `priority` is carried for
    receivers to order their own work; streams deliver in publish order whatever the priority.
    """

    # Unknown fields are ignored, so a reader keeps working when a later build adds one.
    model_config = ConfigDict(validate_assignment=True, extra="ignore")

    message_id: str = Field(default_factory=_new_id, min_length=1)
    from_sandbox: str = "host"
    to_sandbox: str = BROADCAST
    from_agent: str
    to_agent: str = ANY_AGENT
    message_type: MessageType
    content: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=_now)
    priority: int = Field(default=5, ge=0, le=9)
    requires_response: bool = False
    correlation_id: str | None = None
    #: Seconds after `timestamp` the message stops being worth handling; None keeps it forever.
    ttl: float | None = Field(default=None, gt=0)
    metadata: dict[str, str] = Field(default_factory=dict)
    workspace_id: str = "default"
    topic: str | None = None
    version: int = Field(default=WIRE_VERSION, ge=1)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # A naive time from another program is taken as UTC, so expiry never compares naive and aware.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the message outlived its `ttl` (timestamp + ttl < now); never, without a ttl."""
        if self.ttl is None:
            return False
        current = now or _now()
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        return self.timestamp + timedelta(seconds=self.ttl) < current

    # The pydantic mypy plugin gives `model_construct` each field as a keyword; this keeps the base's.
    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:  # type: ignore[override]
        """As `BaseModel.model_construct`, marking the unvalidated message for `to_fields` to check."""
        message = super().model_construct(_fields_set, **values)
        _mark_unvalidated(message)
        return message

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """As `BaseModel.model_copy`; a copy with `update` (not validated) is marked for `to_fields`."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            _mark_unvalidated(copied)
        return copied

    def to_fields(self) -> dict[str, str]:
        """The stream entry: `v` (wire version), `id`, `type`, and `msg`, the whole message as JSON.

        A bad entry is cheaper to refuse at the sender than at every reader. A message built by
        validation, and kept valid by `validate_assignment`, is written as it is (validating it again
        was a tenth of a send's CPU in bench/bus.py). One made by `model_construct` or
        `model_copy(update=...)`, which skip validation, is validated first, and so is one whose
        `metadata` got a value other than text in place. Content that JSON cannot hold fails to
        serialise whatever the path.

        Raises:
            BadRequest: the message is invalid, or its content is not JSON-serializable.
        """
        checked = self
        if type(self.__pydantic_fields_set__) is not set or not _all_text(self.metadata):
            checked = self._checked()
        try:
            body = checked.model_dump_json()
        except PydanticSerializationError as exc:
            raise BadRequest(f"invalid AgentMessage: content is not JSON-serializable: {exc}") from None
        return {
            "v": str(checked.version),
            "id": checked.message_id,
            "type": checked.message_type,
            "msg": body,
        }

    def _checked(self) -> AgentMessage:
        """The message validated anew from its fields.

        Raises:
            BadRequest: the message is invalid.
        """
        try:
            return type(self).model_validate(self.__dict__)
        except ValidationError as exc:
            raise BadRequest(f"invalid AgentMessage: {describe_error(exc)}") from None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> AgentMessage:
        """The message in a stream entry written by `to_fields`.

        Raises:
            MalformedMessage: the entry has no readable message, or a wire version this build does not read.
        """
        version = fields.get("v")
        if version is None:
            names = ", ".join(sorted(fields)) or "none"
            raise MalformedMessage(f"entry has no 'v' field, so it is not an AgentMessage (fields: {names})")
        if version != str(WIRE_VERSION):
            raise MalformedMessage(f"unsupported wire version {version!r}; this build reads {WIRE_VERSION}")
        body = fields.get("msg")
        if body is None:
            raise MalformedMessage("entry has no 'msg' field")
        try:
            message = cls.model_validate_json(body)
        except ValidationError as exc:
            raise MalformedMessage(
                f"entry 'msg' is not a valid AgentMessage: {describe_error(exc)}"
            ) from None
        entry_id = fields.get("id")
        if entry_id is not None and entry_id != message.message_id:
            raise MalformedMessage(
                f"entry id {entry_id!r} differs from its message_id {message.message_id!r}"
            )
        return message


class _Unvalidated(set[str]):
    """The fields set of a message made without validation; `to_fields` validates such a message.

    The mark lives in pydantic's own per-instance slot, so it costs validated messages nothing (a
    private attribute made every `model_validate_json` on the consumer side slower), does not take
    part in equality, and is carried by `model_copy` and pickling.
    """


def _mark_unvalidated(message: AgentMessage) -> None:
    object.__setattr__(message, "__pydantic_fields_set__", _Unvalidated(message.__pydantic_fields_set__))


def _all_text(table: Mapping[str, str]) -> bool:
    return all(type(name) is str and type(value) is str for name, value in table.items())


def describe_error(exc: ValidationError) -> str:
    """The first validation error in one line, quoting the bad value."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "value"
    if err["type"] in ("json_invalid", "missing"):
        return f"{where}: {err['msg']}"
    shown = repr(err["input"])
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where}: {err['msg']}, got {shown}"
