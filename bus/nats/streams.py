"""The JetStream streams and durable consumers behind bus streams and consumer groups.

They are made on first use and remembered by the bus instance, so the hot path asks the server
nothing about them; when another process deleted one (a publish finds no stream, a pull no consumer),
the caller forgets it and it is made again, the way a Redis group heals.

- A stream keeps entries by limits (every group sees every entry). `Retention` becomes its `max_msgs`
  or `max_age`; a stream that exists with other limits is updated only when a caller asks for limits.
- A group is a durable pull consumer with explicit acknowledgement, `ack_wait` (the idle time after
  which the server hands an unacknowledged entry out again) and `max_deliver` (a backstop: entries the
  server gives up on are announced on the max-deliveries advisory subject, kept in the dead-letter
  stream `rt~max-deliveries`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, NoReturn

from bus.backend import Retention, parse_entry_id
from bus.nats.client import CONSUMER_NOT_FOUND, STREAM_NAME_IN_USE, STREAM_NOT_FOUND, ApiError, NatsLink
from bus.nats.names import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT, consumer_name, stream_name, subject

log = logging.getLogger("roundtable.bus")

#: JetStream refuses a shorter max_age.
MIN_AGE_MS = 100
_DEFAULT_DUPLICATE_WINDOW_NS = 120_000_000_000
_NOT_FOUND = (STREAM_NOT_FOUND, CONSUMER_NOT_FOUND)

#: A stream's (max_msgs, max_age ns); `UNKNOWN` when it exists with limits this instance did not set.
Limits = tuple[int, int]
UNKNOWN: Limits = (-2, -2)
UNLIMITED: Limits = (-1, 0)


def limits_of(retention: Retention | None) -> Limits | None:
    if retention is None:
        return None
    if retention.maxlen is not None:
        return (max(1, retention.maxlen), 0)  # JetStream reads max_msgs 0 as "no limit"; keep one
    if retention.max_age_ms is not None:
        return (-1, max(MIN_AGE_MS, retention.max_age_ms) * 1_000_000)
    return None


@dataclass(slots=True)
class Group:
    """What this bus instance knows of one consumer group's durable consumer."""

    stream: str
    consumer: str
    ack_wait_ms: int
    #: Highest stream sequence handed out new to the group, as far as this instance saw.
    last_new: int
    #: Consumer sequence of the latest delivery this instance saw (JetStream counts every delivery).
    last_delivery: int
    #: Stream sequence -> (its ack subject, when its ack_wait runs out): entries handed out here.
    held: dict[int, tuple[str, float]] = field(default_factory=dict)


class Streams:
    """The streams and groups one bus instance has made or met."""

    def __init__(
        self, link: NatsLink, *, storage: str, replicas: int, ack_wait_ms: int, max_deliver: int
    ) -> None:
        self._link = link
        self._storage = storage
        self._replicas = replicas
        self._ack_wait_ms = ack_wait_ms
        self._max_deliver = max_deliver
        self._limits: dict[str, Limits] = {}
        self._groups: dict[tuple[str, str], Group] = {}
        self._dead_letters_ready = False

    def fail(self, error: ApiError) -> NoReturn:
        with self._link.errors:
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    # --- streams ----------------------------------------------------------------------------------

    def _config(self, key: str, limits: Limits) -> dict[str, Any]:
        max_msgs, max_age = limits
        return {
            "name": stream_name(key),
            "description": key,  # the bus key, for people and tools listing streams
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

    async def ensure(self, keys: list[str], limits: Limits | None) -> None:
        """Make streams this instance has not met, and set `limits` where they differ (one round trip)."""
        todo = [
            key
            for key in dict.fromkeys(keys)
            if stream_name(key) not in self._limits
            or (limits is not None and self._limits[stream_name(key)] != limits)
        ]
        if not todo:
            return
        wanted = limits or UNLIMITED
        answers = await self._link.api_many(
            [(f"STREAM.CREATE.{stream_name(k)}", self._config(k, wanted)) for k in todo]
        )
        update = []
        for key, answer in zip(todo, answers, strict=True):
            if not isinstance(answer, ApiError):
                self._limits[stream_name(key)] = wanted
            elif answer.err_code != STREAM_NAME_IN_USE:
                self.fail(answer)
            elif limits is None:
                self._limits[stream_name(key)] = UNKNOWN  # exists with limits set elsewhere: keep them
            else:
                update.append(key)
        if update:
            answers = await self._link.api_many(
                [(f"STREAM.UPDATE.{stream_name(k)}", self._config(k, wanted)) for k in update]
            )
            for key, answer in zip(update, answers, strict=True):
                if isinstance(answer, ApiError):
                    self.fail(answer)
                self._limits[stream_name(key)] = wanted

    def forget(self, key: str) -> None:
        """Drop what is remembered of a stream and its groups (it was deleted)."""
        name = stream_name(key)
        self._limits.pop(name, None)
        for ident in [i for i in self._groups if i[0] == name]:
            del self._groups[ident]

    async def state(self, key: str) -> dict[str, Any] | None:
        """The stream's state (messages, first_seq, last_seq...); None when it does not exist."""
        [answer] = await self._link.api_many([(f"STREAM.INFO.{stream_name(key)}", {})])
        if isinstance(answer, ApiError):
            if answer.err_code == STREAM_NOT_FOUND:
                return None
            self.fail(answer)
        state: dict[str, Any] = answer.get("state") or {}
        return state

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.forget(key)
        answers = await self._link.api_many([(f"STREAM.DELETE.{stream_name(k)}", {}) for k in keys])
        for answer in answers:
            if isinstance(answer, ApiError) and answer.err_code != STREAM_NOT_FOUND:
                self.fail(answer)

    # --- groups -----------------------------------------------------------------------------------

    def known(self, key: str, group: str) -> Group | None:
        return self._groups.get((stream_name(key), consumer_name(group)))

    async def group(self, key: str, group: str, start: str = "0") -> Group:
        """The group's consumer, made (with its stream) when missing; an existing one is kept as it is."""
        ident = (stream_name(key), consumer_name(group))
        known = self._groups.get(ident)
        if known is not None:
            return known
        info = await self.consumer_info(key, group)
        if info is None:
            await self.ensure([key], None)
            await self._ensure_dead_letters()
            [answer] = await self._link.api_many([self._create(key, group, start)])
            if isinstance(answer, ApiError):
                info = await self.consumer_info(key, group)  # made meanwhile by another process?
                if info is None:
                    self.fail(answer)
            else:
                info = answer
        delivered = info.get("delivered") or {}
        made = Group(
            stream=ident[0],
            consumer=ident[1],
            ack_wait_ms=int(info["config"].get("ack_wait", 0)) // 1_000_000,
            last_new=int(delivered.get("stream_seq", 0)),
            last_delivery=int(delivered.get("consumer_seq", 0)),
        )
        return self._groups.setdefault(ident, made)

    async def groups(self, keys: list[str], group: str) -> list[Group]:
        return list(await asyncio.gather(*(self.group(key, group) for key in keys)))

    def _create(self, key: str, group: str, start: str) -> tuple[str, dict[str, Any]]:
        durable = consumer_name(group)
        config: dict[str, Any] = {
            "durable_name": durable,
            "description": group,
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

    async def consumer_info(self, key: str, group: str) -> dict[str, Any] | None:
        """The consumer's info (num_ack_pending, delivered...); None when it or its stream is missing."""
        [answer] = await self._link.api_many(
            [(f"CONSUMER.INFO.{stream_name(key)}.{consumer_name(group)}", {})]
        )
        if isinstance(answer, ApiError):
            if answer.err_code in _NOT_FOUND:
                return None
            self.fail(answer)
        return answer

    async def quiet(self, keys: list[str], group: str) -> set[str]:
        """Of `keys`, those whose group has nothing new and nothing pending, in one round trip.

        Asking also refreshes JetStream 2.9's cached count of a consumer's pending entries, which
        trimming can leave too high (a pull then goes unanswered until it is given up).
        """
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

    async def set_ack_wait(self, key: str, group: str, ack_wait_ms: int) -> None:
        """Make the group's ack_wait `ack_wait_ms` (a consumer update, once per value)."""
        known = self.known(key, group)
        if known is not None and known.ack_wait_ms == ack_wait_ms:
            return
        info = await self.consumer_info(key, group)
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
            log.warning("roundtable.nats_dead_letters_unkept where=%s error=%s", self._link.where, answer)
