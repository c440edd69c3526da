"""Looking into the bus on NATS JetStream for operators (`bus.inspection.Inspectable`).

Everything comes from the JetStream API, one bus stream being one JetStream stream whose description
is its bus key, and one consumer group one durable consumer whose description is the group's name:

- **Streams** are listed with `STREAM.LIST`, filtered by the workspace's subjects when the prefix
  names one, and kept when their description starts with the prefix (and names them: KV buckets and
  streams other programs made are left out).
- **A stream's info** is its state (length, first and last sequence) and its durable consumers from
  `CONSUMER.LIST`. A group's `pending` is the consumer's `num_ack_pending`, its `lag` its `num_pending`
  (entries not yet handed out: exact, also after trimming), its last delivered id the stream sequence
  of `delivered`.
- **What JetStream cannot tell.** Consumers of a group share one durable consumer and pull from it
  anonymously, so the server knows no bus consumer names: a group's `consumers` is empty. Nor does it
  answer for one entry whether it is pending: an entry at or below the consumer's ack floor is
  acknowledged, one above the last delivered sequence is waiting, and one in between is taken as
  pending (it may have been acknowledged out of order), with its consumer, idle time and delivery
  count unknown (None).
- **Time.** Entry ids are sequence numbers, not times; `id_before_time` asks the server for the
  first sequence at or after a time through a short-lived consumer starting `by_start_time`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bus.inspection import ConsumerInfo, GroupInfo, PendingEntry, StreamInfo
from bus.nats.client import STREAM_NOT_FOUND, ApiError, NatsLink
from bus.nats.names import consumer_name, escape, stream_name
from bus.nats.streams import Streams
from bus.nats.wire import entry_id, entry_seq

#: How long the server keeps the consumer `id_before_time` makes, should its deletion be lost.
_PROBE_INACTIVE_NS = 5_000_000_000


class NatsInspection:
    """The inspection calls of `NatsBus`, over its link and streams."""

    def __init__(self, link: NatsLink, streams: Streams) -> None:
        self._link = link
        self._streams = streams

    async def list_streams(self, prefix: str) -> list[str]:
        query: dict[str, Any] = {}
        workspace = _workspace_of(prefix)
        if workspace is not None:
            query["subject"] = f"rt.{escape(workspace)}.>"
        found: set[str] = set()
        offset = 0
        while True:
            with self._link.errors:
                page = await self._link.api("STREAM.LIST", {**query, "offset": offset})
            streams = page.get("streams") or []
            for info in streams:
                config = info.get("config") or {}
                key = config.get("description") or ""
                if key.startswith(prefix) and stream_name(key) == config.get("name"):
                    found.add(key)
            offset += len(streams)
            if not streams or offset >= int(page.get("total", 0)):
                return sorted(found)

    async def stream_info(self, stream: str) -> StreamInfo | None:
        state = await self._streams.state(stream)
        if state is None:
            return None
        consumers = await self._consumers(stream)
        if consumers is None:  # deleted between the two calls
            return None
        messages = int(state.get("messages", 0))
        return StreamInfo(
            stream=stream,
            length=messages,
            first_id=entry_id(int(state["first_seq"])) if messages else None,
            last_id=entry_id(int(state["last_seq"])) if messages else None,
            groups=sorted((_group(info) for info in consumers), key=lambda g: g.name),
        )

    async def pending_entry(self, stream: str, group: str, ident: str) -> PendingEntry | None:
        """The entry as pending, by the ack floor approximation (see the module docstring)."""
        seq = entry_seq(ident)
        if seq <= 0:
            return None
        info = await self._streams.consumer_info(stream, group)
        if info is None:
            return None
        acked = int((info.get("ack_floor") or {}).get("stream_seq", 0))
        delivered = int((info.get("delivered") or {}).get("stream_seq", 0))
        if seq <= acked or seq > delivered or not info.get("num_ack_pending"):
            return None
        return PendingEntry(entry_id=entry_id(seq), consumer=None, idle_ms=None, deliveries=None)

    async def id_before_time(self, stream: str, at: datetime) -> str | None:
        """The id of the entry before the first one added at `at` or later; None when that is the first.

        A consumer starting `by_start_time` reports, before it delivers anything, the sequence before
        its first one as delivered; it is deleted right after (and would expire by itself).
        """
        name = stream_name(stream)
        config = {
            "deliver_policy": "by_start_time",
            "opt_start_time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "ack_policy": "none",
            "inactive_threshold": _PROBE_INACTIVE_NS,
            "mem_storage": True,
        }
        [answer] = await self._link.api_many(
            [(f"CONSUMER.CREATE.{name}", {"stream_name": name, "config": config})]
        )
        if isinstance(answer, ApiError):
            if answer.err_code == STREAM_NOT_FOUND:
                return None
            self._streams.fail(answer)
        await self._link.api_many([(f"CONSUMER.DELETE.{name}.{answer['name']}", {})])
        before = int((answer.get("delivered") or {}).get("stream_seq", 0))
        return entry_id(before) if before > 0 else None

    async def _consumers(self, stream: str) -> list[dict[str, Any]] | None:
        """The stream's durable consumers' infos; None when the stream does not exist."""
        name = stream_name(stream)
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            [page] = await self._link.api_many([(f"CONSUMER.LIST.{name}", {"offset": offset})])
            if isinstance(page, ApiError):
                if page.err_code == STREAM_NOT_FOUND:
                    return None
                self._streams.fail(page)
            infos = page.get("consumers") or []
            for info in infos:
                config = info.get("config") or {}
                group = config.get("description") or ""
                if config.get("durable_name") and consumer_name(group) == config["durable_name"]:
                    found.append(info)
            offset += len(infos)
            if not infos or offset >= int(page.get("total", 0)):
                return found


def _group(info: dict[str, Any]) -> GroupInfo:
    delivered = int((info.get("delivered") or {}).get("stream_seq", 0))
    members: list[ConsumerInfo] = []  # JetStream knows no bus consumer names (see the module docstring)
    return GroupInfo(
        name=info["config"]["description"],
        consumers=members,
        pending=int(info.get("num_ack_pending", 0)),
        last_delivered_id=entry_id(delivered),
        lag=int(info.get("num_pending", 0)),
    )


def _workspace_of(prefix: str) -> str | None:
    """The workspace a prefix `rt:{ws}:...` is wholly inside, or None."""
    if not prefix.startswith("rt:{"):
        return None
    end = prefix.find("}:")
    if end < 0 or "{" in prefix[4:end] or "}" in prefix[4:end]:
        return None
    return prefix[4:end]
