"""The bus on NATS JetStream, through nats-py, for deployments that outgrow one Redis.

How the `Bus` contract maps onto JetStream (`nats_names` says how keys become names):

- **Streams.** Each bus stream is a JetStream stream with one subject, e.g. `rt.default.inbox.analyst.p9`,
  kept by limits (every consumer group sees every entry, as on Redis). Its sequence numbers are the
  entry ids (`"<seq>-0"`), so they grow in publish order. `Retention` sets the stream's `max_msgs`
  (exact, where Redis is approximate) or `max_age` (100 ms at least: JetStream's floor).
- **Groups.** A consumer group is a durable pull consumer with explicit acknowledgement; consumers of a
  group share it, so each entry goes to one of them. Its `ack_wait` is the idle time after which the
  server hands an unacknowledged entry out again, counting the delivery; `reclaim(min_idle_ms=...)`
  sets it. Its `max_deliver` is a backstop above the delivery layer's own limit: entries the server
  gives up on are announced on the max-deliveries advisory subject, kept in the `rt~max-deliveries`
  stream (the original entry stays readable in its stream).
- **Claims and tables** live in KV buckets (`nats_kv`): KV `create` is the atomic claim.
- **Hot path.** Publishes, claims and acknowledgements go out in batches, one flush and one wait per
  batch; a pull fetches up to `count` entries at once and returns as soon as any is there.

What JetStream cannot give is listed in `NatsBus.unsupported`, with the reason; the contract suite
skips those tests on NATS instead of faking them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from nats.aio.msg import Msg

from bus.backend import (
    Claims,
    ClaimStatus,
    Delivery,
    Received,
    Retention,
    Settlement,
    check_not_negative,
    check_owner,
    check_positive,
    check_start,
    check_streams,
    parse_entry_id,
)
from bus.message import AgentMessage, MalformedMessage
from bus.nats_client import (
    CONSUMER_NOT_FOUND,
    REQUEST_TIMEOUT_S,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    ApiError,
    NatsLink,
    NoResponders,
    Request,
    status_of,
)
from bus.nats_kv import DEFAULT_CLAIMS_TTL_MS, Buckets
from bus.nats_names import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT, consumer_name, stream_name, subject
from bus.redis_streams import redact_url
from engine.errors import BusUnavailable, ConfigError

log = logging.getLogger("roundtable.bus")

#: The idle time after which an unacknowledged entry is handed out again (the delivery layer's default).
DEFAULT_ACK_WAIT_MS = 30_000
#: Deliveries after which the server gives an entry up; above the delivery layer's own limit (5).
DEFAULT_MAX_DELIVER = 20
#: Longest a single pull waits; longer `block_ms` return [] sooner, as the contract allows.
MAX_BLOCK_MS = 10_000
#: How long a read woken by a publish waits for JetStream to have stored it.
WAKE_GRACE_MS = 100
#: JetStream refuses a shorter max_age.
MIN_AGE_MS = 100
_DEFAULT_DUPLICATE_WINDOW_NS = 120_000_000_000
_NOT_FOUND = (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND)
_HELD_SWEEP = 10_000

#: A stream's (max_msgs, max_age ns); `_UNKNOWN` when it exists with limits this instance did not set.
Limits = tuple[int, int]
_UNKNOWN: Limits = (-2, -2)
_UNLIMITED: Limits = (-1, 0)


@dataclass(slots=True)
class _Group:
    """What this bus instance knows of one consumer group's durable consumer."""

    ack_wait_ms: int
    #: Highest stream sequence handed out new to the group, as far as this instance saw.
    last_new: int
    #: Consumer sequence of the latest delivery this instance saw (JetStream counts every delivery).
    last_delivery: int
    #: Stream sequence -> (its ack subject, when its ack_wait runs out): entries handed out here.
    held: dict[int, tuple[str, float]] = field(default_factory=dict)


@dataclass(slots=True)
class _Taken:
    stream: str
    seq: int
    deliveries: int
    fields: dict[str, str] | None
    error: str | None


def _limits(retention: Retention | None) -> Limits | None:
    if retention is None:
        return None
    if retention.maxlen is not None:
        return (max(1, retention.maxlen), 0)  # JetStream reads max_msgs 0 as "no limit"; keep one
    if retention.max_age_ms is not None:
        return (-1, max(MIN_AGE_MS, retention.max_age_ms) * 1_000_000)
    return None


def _encode(fields: Mapping[str, str]) -> bytes:
    return json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":")).encode()


def _decode(data: bytes) -> tuple[dict[str, str], str | None]:
    """An entry's fields, or its raw text under "data" and why it is not a field map."""
    try:
        fields = json.loads(data)
    except ValueError:
        fields = None
    if isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values()):
        return fields, None
    text = data.decode(errors="replace")
    return {"data": text}, "entry is not a JSON object of string fields, so it is not an AgentMessage"


def _ack_info(reply: str) -> tuple[int, int, int]:
    """(deliveries, stream sequence, consumer sequence) from a JetStream ack subject."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4  # $JS.ACK.<stream>... or $JS.ACK.<domain>.<account>.<stream>...
    return int(tokens[base + 2]), int(tokens[base + 3]), int(tokens[base + 4])


def _entry_seq(entry_id: str) -> int:
    """The stream sequence of an entry id "<seq>-0"; ids of another shape name no entry here (0)."""
    seq, part = parse_entry_id(entry_id)
    return seq if part == 0 else 0


def _delivery(taken: _Taken, status: ClaimStatus) -> Delivery:
    entry_id = f"{taken.seq}-0"
    fields = taken.fields or {}
    if taken.error is not None:
        return Delivery(taken.stream, entry_id, None, taken.error, taken.deliveries, status, fields)
    try:
        message = AgentMessage.from_fields(fields)
    except MalformedMessage as exc:
        return Delivery(taken.stream, entry_id, None, str(exc), taken.deliveries, status, fields)
    return Delivery(taken.stream, entry_id, message, None, taken.deliveries, status, fields)


class NatsBus:
    """The bus on a NATS server with JetStream (2.9 or later).

    Args:
        url: a NATS URL, `nats://host:4222` or `tls://host:4222` (credentials in it are hidden in logs).
        storage: "file" (survives a restart) or "memory" for the streams and buckets this bus creates.
        replicas: copies of each stream in a JetStream cluster.
        ack_wait_ms: idle time after which an unacknowledged entry is delivered again.
        max_deliver: deliveries after which the server gives an entry up (-1: never).
        claims_ttl_ms: how long claim keys are kept at least.
        sync_acks: wait for the server to confirm acknowledgements (one round trip per batch), so a
            `pending_count` right after sees them; False sends them and only flushes.
        request_timeout_s: how long to wait for any one reply.

    Raises:
        ConfigError: the URL is not a NATS URL.
    """

    name = "nats"

    #: What the contract asks and JetStream cannot give: capability -> why. The contract suite skips
    #: the tests that need one of these on this backend, with this reason.
    unsupported: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "reclaim": (
                "JetStream hands an unacknowledged entry out again by itself once it has been pending for "
                "the consumer's ack_wait (reclaim's min_idle_ms sets it); no call gives a chosen consumer "
                "the entries idle longer than a chosen time, so redeliveries come back through receive "
                "and consume, with their delivery count"
            ),
            "age_retention_under_100ms": (
                "JetStream's shortest max_age is 100 ms, and the server expires entries on its own timer, "
                "so younger limits keep entries for 100 ms"
            ),
        }
    )

    def __init__(
        self,
        url: str,
        *,
        storage: str = "file",
        replicas: int = 1,
        ack_wait_ms: int = DEFAULT_ACK_WAIT_MS,
        max_deliver: int = DEFAULT_MAX_DELIVER,
        claims_ttl_ms: int = DEFAULT_CLAIMS_TTL_MS,
        sync_acks: bool = True,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = redact_url(url)
        if urlsplit(url).scheme not in ("nats", "tls"):
            raise ConfigError(f"{self.url!r} is not a NATS URL; use nats://host:4222 or tls://host:4222")
        if storage not in ("file", "memory"):
            raise ConfigError(f"unknown JetStream storage {storage!r}; choose file or memory")
        check_positive("ack_wait_ms", ack_wait_ms)
        self._storage = storage
        self._replicas = replicas
        self._ack_wait_ms = ack_wait_ms
        self._max_deliver = max_deliver
        self._sync_acks = sync_acks
        self._link = NatsLink(url, self.url, request_timeout_s=request_timeout_s)
        self._kv = Buckets(self._link, storage=storage, replicas=replicas, claims_ttl_ms=claims_ttl_ms)
        self._streams: dict[str, Limits] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._dead_letters_ready = False
        self._closed = False

    # --- publishing -------------------------------------------------------------------------------

    async def publish(self, stream: str, message: AgentMessage, *, retention: Retention | None = None) -> str:
        payload = _encode(message.to_fields())
        [entry_id] = await self._append([(stream, payload, retention)])
        return entry_id

    async def publish_many(
        self, entries: Sequence[tuple[str, AgentMessage]], *, retention: Retention | None = None
    ) -> list[str]:
        checked = [(stream, _encode(message.to_fields()), retention) for stream, message in entries]
        return await self._append(checked)

    async def append(
        self, stream: str, fields: Mapping[str, str], *, retention: Retention | None = None
    ) -> str:
        [entry_id] = await self._append([(stream, _encode(fields), retention)])
        return entry_id

    async def _publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        """Append fields as they are, skipping the message checks (tests write malformed entries)."""
        return await self.append(stream, fields)

    async def _append(self, items: Sequence[tuple[str, bytes, Retention | None]]) -> list[str]:
        """Publish entries in one batch (one flush, one wait for all acknowledgements)."""
        self._check_open()
        if not items:
            return []
        for retention in {r for _, _, r in items}:
            await self._ensure_streams([k for k, _, r in items if r == retention], _limits(retention))
        replies = await self._link.request_many([(subject(key), payload, None) for key, payload, _ in items])
        seqs: list[int | None] = [self._puback(reply) for reply in replies]
        gone = [i for i, seq in enumerate(seqs) if seq is None]
        if gone:
            # Another process deleted the stream meanwhile: make it again and send those once more.
            for i in gone:
                self._forget_stream(items[i][0])
            for i in gone:
                await self._ensure_streams([items[i][0]], _limits(items[i][2]))
            again = await self._link.request_many([(subject(items[i][0]), items[i][1], None) for i in gone])
            for i, reply in zip(gone, again, strict=True):
                seqs[i] = self._puback(reply)
        if any(seq is None for seq in seqs):
            raise BusUnavailable(f"nats at {self.url} failed: a stream vanished while it was written")
        return [f"{seq}-0" for seq in seqs]

    def _puback(self, reply: Msg) -> int | None:
        if status_of(reply) == "503":
            return None
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error:
            raise BusUnavailable(f"nats at {self.url} failed: {error.get('description')}")
        return int(answer["seq"])

    def _stream_config(self, key: str, limits: Limits) -> dict[str, Any]:
        max_msgs, max_age = limits
        return {
            "name": stream_name(key),
            "subjects": [subject(key)],
            "retention": "limits",
            "discard": "old",
            "storage": self._storage,
            "num_replicas": self._replicas,
            "max_msgs": max_msgs,
            "max_age": max_age,
            "allow_direct": True,
            "duplicate_window": min(max_age, _DEFAULT_DUPLICATE_WINDOW_NS) or _DEFAULT_DUPLICATE_WINDOW_NS,
        }

    async def _ensure_streams(self, keys: Iterable[str], limits: Limits | None) -> None:
        """Create streams this instance has not seen, and set `limits` where they differ."""
        todo = [
            key
            for key in dict.fromkeys(keys)
            if stream_name(key) not in self._streams
            or (limits is not None and self._streams[stream_name(key)] != limits)
        ]
        if not todo:
            return
        wanted = limits or _UNLIMITED
        answers = await self._link.api_many(
            [(f"STREAM.CREATE.{stream_name(k)}", self._stream_config(k, wanted)) for k in todo]
        )
        update = []
        for key, answer in zip(todo, answers, strict=True):
            if not isinstance(answer, ApiError):
                self._streams[stream_name(key)] = wanted
            elif answer.err_code != STREAM_NAME_IN_USE:
                self._raise(answer)
            elif limits is None:
                self._streams[stream_name(key)] = _UNKNOWN  # exists with limits set elsewhere: keep them
            else:
                update.append(key)
        if update:
            answers = await self._link.api_many(
                [(f"STREAM.UPDATE.{stream_name(k)}", self._stream_config(k, wanted)) for k in update]
            )
            for key, answer in zip(update, answers, strict=True):
                if isinstance(answer, ApiError):
                    self._raise(answer)
                self._streams[stream_name(key)] = wanted

    def _forget_stream(self, key: str) -> None:
        name = stream_name(key)
        self._streams.pop(name, None)
        for ident in [i for i in self._groups if i[0] == name]:
            del self._groups[ident]

    def _raise(self, error: ApiError) -> None:
        with self._link.errors:
            raise error

    # --- groups -----------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        check_start(start)
        self._check_open()
        await self._group(stream, group, start)

    async def _group(self, key: str, group: str, start: str = "0") -> _Group:
        """This instance's view of a group's consumer, creating the consumer (and stream) if missing."""
        ident = (stream_name(key), consumer_name(group))
        known = self._groups.get(ident)
        if known is not None:
            return known
        info = await self._consumer_info(key, group)
        if info is None:
            await self._ensure_streams([key], None)
            await self._ensure_dead_letters()
            answer = (await self._link.api_many([self._create_consumer(key, group, start)]))[0]
            if isinstance(answer, ApiError):
                info = await self._consumer_info(key, group)  # made meanwhile by someone else?
                if info is None:
                    self._raise(answer)
            else:
                info = answer
        assert info is not None
        delivered = info.get("delivered") or {}
        made = _Group(
            ack_wait_ms=int(info["config"].get("ack_wait", 0)) // 1_000_000,
            last_new=int(delivered.get("stream_seq", 0)),
            last_delivery=int(delivered.get("consumer_seq", 0)),
        )
        return self._groups.setdefault(ident, made)

    async def _groups_for(self, keys: Sequence[str], group: str) -> list[_Group]:
        return list(await asyncio.gather(*(self._group(key, group) for key in keys)))

    def _create_consumer(self, key: str, group: str, start: str) -> tuple[str, dict[str, Any]]:
        durable = consumer_name(group)
        config: dict[str, Any] = {
            "durable_name": durable,
            "ack_policy": "explicit",
            "ack_wait": self._ack_wait_ms * 1_000_000,
            "max_deliver": self._max_deliver,
            "max_ack_pending": -1,
            "replay_policy": "instant",
        }
        if start == "$":
            config["deliver_policy"] = "new"
        elif parse_entry_id(start) == (0, 0):
            config["deliver_policy"] = "all"
        else:  # after entry (seq, n): from the next sequence
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = parse_entry_id(start)[0] + 1
        name = stream_name(key)
        return f"CONSUMER.CREATE.{name}.{durable}", {"stream_name": name, "config": config}

    async def _consumer_info(self, key: str, group: str) -> dict[str, Any] | None:
        [answer] = await self._link.api_many(
            [(f"CONSUMER.INFO.{stream_name(key)}.{consumer_name(group)}", {})]
        )
        if isinstance(answer, ApiError):
            if answer.err_code in _NOT_FOUND:
                return None
            self._raise(answer)
        assert isinstance(answer, dict)
        return answer

    async def _ensure_dead_letters(self) -> None:
        """Keep the server's max-deliveries advisories: the entries JetStream gave up on."""
        if self._dead_letters_ready:
            return
        self._dead_letters_ready = True
        config = {
            "name": DEAD_LETTER_STREAM,
            "subjects": [DEAD_LETTER_SUBJECT],
            "retention": "limits",
            "discard": "old",
            "storage": self._storage,
            "num_replicas": self._replicas,
            "max_msgs": 100_000,
            "max_age": 7 * 24 * 3600 * 1_000_000_000,
            "allow_direct": True,
        }
        [answer] = await self._link.api_many([(f"STREAM.CREATE.{DEAD_LETTER_STREAM}", config)])
        if isinstance(answer, ApiError) and answer.err_code != STREAM_NAME_IN_USE:
            log.warning("roundtable.nats_dead_letters_unkept where=%s error=%s", self.url, answer)

    # --- reading ----------------------------------------------------------------------------------

    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int = 10, block_ms: int = 1000
    ) -> list[Delivery]:
        check_positive("count", count)
        check_not_negative("block_ms", block_ms)
        self._check_open()
        taken: list[_Taken] = []
        block = min(block_ms, MAX_BLOCK_MS)
        if block:
            await self._pull(stream, group, count, block, taken, {})
        else:
            await self._group(stream, group)
            await self._read_lanes([stream], group, count, set(), 0, taken, {})
        return [_delivery(t, "new") for t in taken]

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
        check_streams(streams)
        check_positive("count", count)
        check_not_negative("block_ms", block_ms)
        check_owner(claims, consumer)
        self._check_open()
        await self._groups_for(streams, group)
        taken: list[_Taken] = []
        trimmed: dict[str, int] = {}
        block = min(block_ms, MAX_BLOCK_MS)
        if block and len(streams) == 1:
            await self._pull(streams[0], group, count, block, taken, trimmed)
        elif block:
            await self._wait_and_read(streams, group, count, block, taken, trimmed)
        else:
            await self._read_lanes(streams, group, count, set(), 0, taken, trimmed)
        if claims is None:
            statuses: list[ClaimStatus] = ["new"] * len(taken)
        else:
            statuses = await self._kv.take(claims, [(t.fields or {}).get("id") for t in taken])
        deliveries = [_delivery(t, s) for t, s in zip(taken, statuses, strict=True)]
        return Received(deliveries, trimmed)

    async def _wait_and_read(
        self,
        keys: Sequence[str],
        group: str,
        count: int,
        block_ms: int,
        taken: list[_Taken],
        trimmed: dict[str, int],
    ) -> None:
        """Read the lanes in order; when all are empty, wait for a publish on any of them and read again.

        The subscriptions start before the read that follows them, so nothing published in between
        is missed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        await self._read_lanes(keys, group, count, set(), 0, taken, trimmed)
        if taken:
            return  # busy lanes need no subscriptions
        async with self._link.wakeups([subject(k) for k in keys]) as wakeups:
            woken: set[str] = set()
            while True:
                left_ms = int((deadline - loop.time()) * 1000)
                grace = max(1, min(WAKE_GRACE_MS, left_ms))
                await self._read_lanes(keys, group, count, woken, grace, taken, trimmed)
                if taken or left_ms <= 0:
                    return
                with self._link.errors:
                    if not await wakeups.wait(left_ms / 1000):
                        return
                woken = wakeups.take()

    async def _read_lanes(
        self,
        keys: Sequence[str],
        group: str,
        count: int,
        woken: set[str],
        grace_ms: int,
        taken: list[_Taken],
        trimmed: dict[str, int],
    ) -> None:
        """One pass over the lanes, highest first; a lane that just saw a publish waits `grace_ms` for it.

        With several lanes, one round trip first finds those with nothing new and nothing pending, so
        that the pass pulls only where there can be something.
        """
        quiet = (
            await self._quiet([k for k in keys if subject(k) not in woken], group) if len(keys) > 1 else set()
        )
        for key in keys:
            if len(taken) >= count:
                return
            if key not in quiet:
                wait = grace_ms if subject(key) in woken else 0
                await self._pull(key, group, count - len(taken), wait, taken, trimmed)

    async def _quiet(self, keys: Sequence[str], group: str) -> set[str]:
        if not keys:
            return set()
        durable = consumer_name(group)
        answers = await self._link.api_many([(f"CONSUMER.INFO.{stream_name(k)}.{durable}", {}) for k in keys])
        return {
            key
            for key, answer in zip(keys, answers, strict=True)
            if isinstance(answer, dict)
            and not answer.get("num_pending")
            and not answer.get("num_ack_pending")
        }

    async def _pull(
        self, key: str, group: str, count: int, wait_ms: int, taken: list[_Taken], trimmed: dict[str, int]
    ) -> None:
        known = await self._group(key, group)
        ident = (stream_name(key), consumer_name(group))
        try:
            msgs = await self._link.fetch(ident[0], ident[1], count, wait_ms)
        except NoResponders:
            # The stream or the group was deleted: heal like Redis does, from the start of the stream.
            self._forget_stream(key)
            known = await self._group(key, group)
            try:
                msgs = await self._link.fetch(ident[0], ident[1], count, wait_ms)
            except NoResponders:
                raise BusUnavailable(
                    f"nats at {self.url} failed: group {group!r} on {key!r} vanished"
                ) from None
        lost = self._note(key, known, msgs, taken)
        if lost:
            trimmed[key] = trimmed.get(key, 0) + lost

    def _note(self, key: str, group: _Group, msgs: Sequence[Msg], taken: list[_Taken]) -> int:
        """Record deliveries as held here, and count entries trimmed before the group was handed them.

        A new delivery whose consumer sequence directly follows the last one this instance saw had no
        other delivery of the group between them, so the stream sequences it skipped were trimmed. When
        other instances read the same group in between, nothing is counted: the count is exact for one
        reader of a group and a lower bound otherwise.
        """
        lost = 0
        deadline = time.monotonic() + group.ack_wait_ms / 1000
        for msg in msgs:
            deliveries, seq, delivery = _ack_info(msg.reply)
            if deliveries == 1:
                if delivery == group.last_delivery + 1 and seq > group.last_new + 1:
                    lost += seq - group.last_new - 1
                group.last_new = max(group.last_new, seq)
            group.last_delivery = delivery
            group.held[seq] = (msg.reply, deadline)
            fields, error = _decode(msg.data)
            taken.append(_Taken(key, seq, deliveries, fields, error))
        if len(group.held) > _HELD_SWEEP:
            now = time.monotonic()
            group.held = {s: h for s, h in group.held.items() if h[1] > now}
        return lost

    async def entries(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        check_positive("count", count)
        after_seq = 0 if after is None else parse_entry_id(after)[0]
        self._check_open()
        state = await self._stream_state(stream)
        if state is None:
            return []
        name = stream_name(stream)
        seq, last = max(after_seq + 1, int(state["first_seq"])), int(state["last_seq"])
        rows: list[tuple[str, dict[str, str]]] = []
        while len(rows) < count and seq <= last:
            batch = range(seq, min(last, seq + count - len(rows) - 1) + 1)
            replies = await self._link.request_many(
                [(f"$JS.API.DIRECT.GET.{name}", json.dumps({"seq": n}).encode(), None) for n in batch]
            )
            for n, reply in zip(batch, replies, strict=True):
                if status_of(reply) is None:  # 404: trimmed meanwhile
                    rows.append((f"{n}-0", _decode(reply.data)[0]))
            seq = batch.stop
        return rows

    # --- settling ---------------------------------------------------------------------------------

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        seqs = list(dict.fromkeys(_entry_seq(entry_id) for entry_id in entry_ids))
        self._check_open()
        seqs = [seq for seq in seqs if seq > 0]
        if not seqs:
            return 0
        known = self._groups.get((stream_name(stream), consumer_name(group)))
        now = time.monotonic()
        if known is not None and all(known.held.get(s, ("", 0.0))[1] > now for s in seqs):
            await self._send_acks([(stream, group, seqs)], b"+ACK")
            return len(seqs)
        # Some were handed out elsewhere: count what the server's pending list lost.
        before = await self.pending_count(stream, group)
        if not before:
            return 0
        await self._send_acks([(stream, group, seqs)], b"+ACK", confirm=True)
        return max(0, min(len(seqs), before - await self.pending_count(stream, group)))

    async def _send_acks(
        self, batches: Sequence[tuple[str, str, Sequence[int]]], verb: bytes, *, confirm: bool = False
    ) -> None:
        """Send `+ACK` (or `+WPI`) for entries in one write; acks forget the entries as held here.

        With `sync_acks` (or `confirm`) the last one to each group asks for the server's answer, which
        comes once all of that group's were applied (one reply per group, not per entry); otherwise
        they are sent with one flush.
        """
        groups: list[list[Request]] = []
        deadline_of = time.monotonic()
        for key, group, seqs in batches:
            name, durable = stream_name(key), consumer_name(group)
            known = self._groups.get((name, durable))
            messages: list[Request] = []
            for seq in seqs:
                held = known.held.get(seq) if known else None
                reply = held[0] if held else f"$JS.ACK.{name}.{durable}.1.{seq}.0.0.0"
                messages.append((reply, verb, None))
                if known is None:
                    continue
                if verb == b"+ACK":
                    known.held.pop(seq, None)
                elif held:
                    known.held[seq] = (held[0], deadline_of + known.ack_wait_ms / 1000)
            groups.append(messages)
        if self._sync_acks or confirm:
            await self._link.confirm_many(groups)  # "no responders": the group is gone, nothing to ack
        else:
            await self._link.publish_many([m for messages in groups for m in messages])

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
        """Tie the group's ack_wait to `min_idle_ms`; JetStream then redelivers idle entries by itself.

        Redeliveries come back through `receive` and `consume` (see `unsupported`), so this returns
        nothing itself.
        """
        check_not_negative("min_idle_ms", min_idle_ms)
        check_positive("count", count)
        check_owner(claims, consumer)
        self._check_open()
        if min_idle_ms > 0:
            await self._set_ack_wait(stream, group, min_idle_ms)
        return Received()

    async def _set_ack_wait(self, key: str, group: str, ack_wait_ms: int) -> None:
        known = self._groups.get((stream_name(key), consumer_name(group)))
        if known is not None and known.ack_wait_ms == ack_wait_ms:
            return
        info = await self._consumer_info(key, group)
        if info is None:
            return
        config = dict(info["config"])
        if int(config.get("ack_wait", 0)) != ack_wait_ms * 1_000_000:
            config["ack_wait"] = ack_wait_ms * 1_000_000
            name = stream_name(key)
            with self._link.errors:
                await self._link.api(
                    f"CONSUMER.CREATE.{name}.{consumer_name(group)}", {"stream_name": name, "config": config}
                )
        if known is not None:
            known.ack_wait_ms = ack_wait_ms

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
        seqs = [s for s in (_entry_seq(entry_id) for entry_id in entry_ids) if s > 0]
        self._check_open()
        work = []
        if seqs:
            work.append(self._send_acks([(stream, group, seqs)], b"+WPI"))
        if claims is not None and message_ids:
            work.append(self._kv.renew(claims, message_ids))
        await asyncio.gather(*work)

    async def settle(self, settlement: Settlement) -> None:
        """Records first, then claims, then acknowledgements: a settlement cut short leaves entries
        pending (delivered again, and skipped as done), never acknowledged with a record missing."""
        self._check_open()
        if settlement.is_empty():
            return
        if settlement.records:
            await self._append([(r.stream, _encode(r.fields), r.retention) for r in settlement.records])
        claims = settlement.claims
        if claims is not None:
            await asyncio.gather(
                self._kv.mark_done(claims, settlement.done, settlement.done_ms),
                self._kv.release(claims, settlement.released),
            )
        batches = [
            (stream, settlement.group, [s for s in map(_entry_seq, ids) if s > 0])
            for stream, ids in settlement.acks.items()
            if ids
        ]
        if batches:
            await self._send_acks(batches, b"+ACK")

    # --- state ------------------------------------------------------------------------------------

    async def pending_count(self, stream: str, group: str) -> int:
        self._check_open()
        info = await self._consumer_info(stream, group)
        return 0 if info is None else int(info.get("num_ack_pending", 0))

    async def length(self, stream: str) -> int:
        self._check_open()
        state = await self._stream_state(stream)
        return 0 if state is None else int(state.get("messages", 0))

    async def _stream_state(self, key: str) -> dict[str, Any] | None:
        [answer] = await self._link.api_many([(f"STREAM.INFO.{stream_name(key)}", {})])
        if isinstance(answer, ApiError):
            if answer.err_code == STREAM_NOT_FOUND:
                return None
            self._raise(answer)
        assert isinstance(answer, dict)
        state: dict[str, Any] = answer.get("state") or {}
        return state

    async def map_set(self, key: str, fields: Mapping[str, str]) -> None:
        self._check_open()
        if fields:
            await self._kv.map_change(key, lambda table: table | dict(fields))

    async def map_remove(self, key: str, *names: str) -> None:
        self._check_open()
        if names:
            gone = set(names)
            await self._kv.map_change(key, lambda table: {k: v for k, v in table.items() if k not in gone})

    async def map_get(self, key: str) -> dict[str, str]:
        self._check_open()
        return await self._kv.map_get(key)

    async def delete(self, *keys: str) -> None:
        self._check_open()
        if not keys:
            return
        for key in keys:
            self._forget_stream(key)
        answers = await self._link.api_many([(f"STREAM.DELETE.{stream_name(k)}", {}) for k in keys])
        for answer in answers:
            if isinstance(answer, ApiError) and answer.err_code != STREAM_NOT_FOUND:
                self._raise(answer)
        await self._kv.map_purge(keys)

    async def ping(self) -> None:
        """Return when the server answers and has JetStream; raise `BusUnavailable` otherwise."""
        self._check_open()
        with self._link.errors:
            await self._link.api("INFO")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._link.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable(f"the bus on nats at {self.url} is closed")
