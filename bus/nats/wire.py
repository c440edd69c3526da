"""How bus entries look on NATS: their fields, their ids, and what a delivery's ack subject says.

- An entry's fields travel as one JSON object of strings, so raw records (dead letters, audit) and
  messages (`AgentMessage.to_fields`) go the same way, and a program in any language can read them.
- An entry id is `"<stream sequence>-0"`: one JetStream stream holds one bus stream, so its sequence
  numbers grow in publish order, as Redis ids do.
- A delivery's reply subject, `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>...`,
  tells how often the entry was handed out and where it sits.

This module is pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from bus.backend import ClaimStatus, Delivery, parse_entry_id
from bus.message import AgentMessage, MalformedMessage


@dataclass(slots=True)
class Taken:
    """A delivery as it came off the wire, before its claim is known."""

    stream: str
    seq: int
    deliveries: int
    fields: dict[str, str]
    error: str | None


def encode(fields: Mapping[str, str]) -> bytes:
    return json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[dict[str, str], str | None]:
    """An entry's fields, or its raw text under "data" and why it is not a field map."""
    try:
        fields = json.loads(data)
    except ValueError:
        fields = None
    if isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values()):
        return fields, None
    text = data.decode(errors="replace")
    return {"data": text}, "entry is not a JSON object of string fields, so it is not an AgentMessage"


def ack_info(reply: str) -> tuple[int, int, int]:
    """(deliveries, stream sequence, consumer sequence) from a JetStream ack subject."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4  # $JS.ACK.<stream>... or $JS.ACK.<domain>.<account>.<stream>...
    return int(tokens[base + 2]), int(tokens[base + 3]), int(tokens[base + 4])


def ack_subject(stream: str, consumer: str, seq: int) -> str:
    """An ack subject for an entry handed out elsewhere: the server reads the stream sequence from it."""
    return f"$JS.ACK.{stream}.{consumer}.1.{seq}.0.0.0"


def entry_id(seq: int) -> str:
    return f"{seq}-0"


def entry_seq(entry: str) -> int:
    """The stream sequence of an entry id "<seq>-0"; ids of another shape name no entry here (0)."""
    seq, part = parse_entry_id(entry)
    return seq if part == 0 else 0


def delivery(taken: Taken, status: ClaimStatus) -> Delivery:
    ident = entry_id(taken.seq)
    if taken.error is not None:
        return Delivery(taken.stream, ident, None, taken.error, taken.deliveries, status, taken.fields)
    try:
        message = AgentMessage.from_fields(taken.fields)
    except MalformedMessage as exc:
        return Delivery(taken.stream, ident, None, str(exc), taken.deliveries, status, taken.fields)
    return Delivery(taken.stream, ident, message, None, taken.deliveries, status, taken.fields)
