"""The agent registry of a workspace: who is there, what they can do, and whether they are alive.

An agent registers a card (name, type, capabilities, sandbox) and then sends heartbeats. Several
processes may register the same agent, as several workers of one persona do: each is an *instance*
(its name is the worker's consumer name), and the agent is online while any instance heartbeats.
`sweep`, run now and then by every worker, marks an agent whose instances all fell silent for
`offline_after_s` offline, and forgets silent instances. Joins, leaves, status changes (and, written
by the mailboxes, dead letters) go to the events stream (`bus/events.py`).

It lives in a few small tables, on any backend that passes the contract suite:

| key | type | holds |
| --- | --- | --- |
| `rt:{ws}:agents` | hash | agent -> its card as JSON (agent, name, type, capabilities, sandbox, meta) |
| `rt:{ws}:presence` | hash | `<agent>/<instance>` -> last heartbeat, milliseconds since the epoch |
| `rt:{ws}:status` | hash | agent -> `{"status": "online"\\|"offline", "last_seen": ms}`, as last swept |
| `rt:{ws}:members` | hash | agent -> sandbox: who may be sent messages (shared with `Mailbox`) |

A card's status is computed when it is read, from the heartbeats, so `get` and `discover` are never
staler than `offline_after_s`; the `status` table only remembers what the last sweep saw, so that each
change is reported once. Heartbeats carry the sender's wall clock: hosts must agree on the time to well
within `offline_after_s`.

Messages of a silent instance: they stay pending in the agent's consumer group, claimed by the dead
consumer, and the agent's other consumers (`Mailbox.serve`) take them over once they have been idle for
the delivery idle timeout; the bus cannot hand them over sooner, since the dead consumer's idempotency
claim lasts that long. When no instance is left, they wait for the next consumer of the agent, which
takes them at its first reclaim. The sweep's status event says how many are waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bus.addressing import INBOX_GROUP, check_agent, inbox_lanes, members_key
from bus.backend import Bus, stream_key
from bus.events import EVENTS_RETENTION, BusEvent, EventKind
from bus.message import describe_error
from engine.errors import BadRequest

log = logging.getLogger("roundtable.bus")

AgentStatus = Literal["online", "offline"]

_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Fields of a card that are stored; status, last seen and instances are read from the heartbeats.
_STORED = ("agent", "name", "type", "capabilities", "sandbox", "meta")


def agents_key(workspace: str) -> str:
    return stream_key(workspace, "agents")


def presence_key(workspace: str) -> str:
    return stream_key(workspace, "presence")


def status_key(workspace: str) -> str:
    return stream_key(workspace, "status")


def check_instance(instance: str) -> str:
    """An instance name: 1-64 letters, digits, '_', '.', '-' (no '/', which separates it from the agent)."""
    if not _INSTANCE.fullmatch(instance):
        raise BadRequest(
            f"instance name {instance!r} cannot be used in the registry; use 1-64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return instance


class AgentCard(BaseModel):
    """What the registry knows of an agent.

    `status`, `last_seen` and `instances` are filled in when the card is read; what `register` is
    given for them is ignored. `workspace` is the registry's own (an empty one is filled in).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    agent: str
    #: For people; the agent id when empty.
    name: str = ""
    #: What kind of agent: "persona" for the engine's, "agent" for any other program.
    type: str = Field(default="agent", min_length=1, max_length=64)
    capabilities: list[str] = Field(default_factory=list)
    #: Where it runs: "host", or a sandbox id.
    sandbox: str = Field(default="host", min_length=1)
    workspace: str = ""
    status: AgentStatus = "online"
    last_seen: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    #: The instances (worker processes) heartbeating for it now, sorted.
    instances: list[str] = Field(default_factory=list)

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        try:
            return check_agent(value)
        except BadRequest as exc:
            raise ValueError(str(exc)) from None

    @field_validator("capabilities")
    @classmethod
    def _capabilities(cls, value: list[str]) -> list[str]:
        for capability in value:
            if not capability or capability != capability.strip() or len(capability) > 128:
                raise ValueError(
                    f"capability {capability!r} must be 1-128 characters without surrounding spaces"
                )
        return list(dict.fromkeys(value))

    def stored(self) -> str:
        return json.dumps(self.model_dump(mode="json", include=set(_STORED)), sort_keys=True)


class Registry:
    """The agent registry of one workspace, as seen from one process.

    Args:
        bus: the backend.
        workspace: the workspace id.
        offline_after_s: an agent with no heartbeat for this long is offline. Heartbeat three times
            as often (`heartbeat_s`), so one late beat does not flip it.
        instance: this process's registrations' name; a worker passes its consumer name, so an event
            about a silent instance names the consumer whose messages are left pending. A fresh one
            by default.
    """

    def __init__(
        self, bus: Bus, workspace: str, *, offline_after_s: float = 15.0, instance: str | None = None
    ) -> None:
        if not offline_after_s > 0:
            raise BadRequest(f"offline_after_s must be more than 0, got {offline_after_s}")
        self.bus = bus
        self.workspace = workspace
        self.offline_after_s = offline_after_s
        self.instance = check_instance(instance or f"i-{uuid.uuid4().hex[:12]}")
        self._agents = agents_key(workspace)
        self._presence = presence_key(workspace)
        self._status = status_key(workspace)
        self._members = members_key(workspace)

    @property
    def heartbeat_s(self) -> float:
        """How often a registered instance should heartbeat."""
        return self.offline_after_s / 3

    # --- an instance's own registrations ----------------------------------------------------------

    async def register(self, card: AgentCard) -> None:
        """Register (or re-register) an agent as served by this instance, and make it a workspace member.

        The card replaces the one stored for the agent, if any. A "joined" event is published.

        Raises:
            BadRequest: the card names another workspace.
        """
        if card.workspace and card.workspace != self.workspace:
            raise BadRequest(
                f"card of {card.agent!r} is for workspace {card.workspace!r}, not this registry's "
                f"{self.workspace!r}; register it with that workspace's registry"
            )
        now = _now_ms()
        await self.bus.map_set(self._agents, {card.agent: card.stored()})
        await self.bus.map_set(self._presence, {self._key(card.agent): str(now)})
        await self.bus.map_set(self._status, {card.agent: _status_value("online", now)})
        await self.bus.map_set(self._members, {card.agent: card.sandbox})
        capabilities = ", ".join(card.capabilities) or "none"
        detail = f"{card.type} in sandbox {card.sandbox}, capabilities: {capabilities}"
        await self._publish("joined", card.agent, "online", detail)
        log.info("roundtable.agent_joined agent=%s instance=%s", card.agent, self.instance)

    async def heartbeat(self, agent: str, *more: str) -> None:
        """Tell the registry this instance still serves these agents (one write for all of them)."""
        now = str(_now_ms())
        await self.bus.map_set(self._presence, {self._key(a): now for a in (agent, *more)})

    async def leave(self, agent: str) -> None:
        """This instance stops serving the agent; a "left" event is published.

        When no other instance heartbeats for it, the agent leaves the workspace: its card goes, and
        messages sent to it are refused from now on (`UnknownRecipient`). Its inbox is kept, so what
        was sent before waits for it to come back.
        """
        await self.bus.map_remove(self._presence, self._key(agent))
        # Read after removing this instance, so of two instances leaving at once the later one sees
        # neither, and the agent does leave.
        presence = await self.bus.map_get(self._presence)
        now = _now_ms()
        live, silent = self._instances(agent, presence, now)
        if live:
            others = len(live)
            detail = f"instance {self.instance} left; {others} other{'s' * (others > 1)} still serve it"
            await self._publish("left", agent, "online", detail)
            return
        await self.bus.map_remove(self._members, agent)
        await self.bus.map_remove(self._agents, agent)
        await self.bus.map_remove(self._status, agent)
        if silent:
            await self.bus.map_remove(self._presence, *(self._key(agent, i) for i, _ in silent))
        await self._publish("left", agent, "offline", "no instance serves it; messages to it are refused")
        log.info("roundtable.agent_left agent=%s instance=%s", agent, self.instance)

    # --- reading ----------------------------------------------------------------------------------

    async def get(self, agent: str) -> AgentCard | None:
        """The agent's card, online or not; None when it is not registered."""
        cards = await self._cards()
        return cards.get(agent)

    async def discover(
        self, *, capability: str | None = None, online_only: bool = True, type: str | None = None
    ) -> list[AgentCard]:
        """Registered agents, sorted by id: those with `capability` (and of `type`) when given, and
        only the online ones unless `online_only` is False."""
        cards = await self._cards()
        return [
            card
            for _, card in sorted(cards.items())
            if (capability is None or capability in card.capabilities)
            and (type is None or card.type == type)
            and (card.status == "online" or not online_only)
        ]

    async def wait_for(self, agents: Sequence[str], *, timeout_s: float) -> list[str]:
        """Wait until every agent is online, for at most `timeout_s`; the ones still missing, in order."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause = 0.05
        while True:
            online = {card.agent for card in await self.discover()}
            missing = [agent for agent in dict.fromkeys(agents) if agent not in online]
            left = deadline - loop.time()
            if not missing or left <= 0:
                return missing
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    # --- upkeep -----------------------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Mark agents whose instances all fell silent offline, and those heard from again online.

        Each change is published as a "status" event; a silent instance of an agent that others
        still serve is reported too, and forgotten. Returns the agents marked offline now.
        """
        now = _now_ms()
        stored, presence, statuses = await asyncio.gather(
            self.bus.map_get(self._agents),
            self.bus.map_get(self._presence),
            self.bus.map_get(self._status),
        )
        gone: list[str] = []
        went_offline: list[str] = []
        for key, value in presence.items():
            agent, _, _ = key.partition("/")
            if agent not in stored and now - _ms(value) > self._offline_ms:
                gone.append(key)  # a heartbeat that raced a leave, or a card removed by hand
        for agent in sorted(stored):
            live, silent = self._instances(agent, presence, now)
            was, last_seen = _parse_status(statuses.get(agent))
            last_seen = max([last_seen, *(seen for _, seen in live + silent)])
            # Forgotten once silent: a heartbeat landing between this read and the removal is lost,
            # and the instance reappears with its next one.
            gone.extend(self._key(agent, instance) for instance, _ in silent)
            silent_names = ", ".join(i for i, _ in silent)
            if live and was == "online":
                others = len(live)
                for instance, _ in silent:
                    detail = (
                        f"instance {instance} went silent; {others} other{'s' * (others > 1)} still "
                        "serve it and take over its pending messages after the idle timeout"
                    )
                    await self._publish("status", agent, "online", detail, instance=instance)
                continue
            if live:
                await self.bus.map_set(self._status, {agent: _status_value("online", last_seen)})
                if was == "offline":
                    await self._publish("status", agent, "online", "heard from again", instance=live[0][0])
            elif was != "offline":
                await self.bus.map_set(self._status, {agent: _status_value("offline", last_seen)})
                pending = await self._pending(agent)
                silence = f"for {(now - last_seen) / 1000:.1f}s" if last_seen else "ever"
                detail = f"no heartbeat {silence}; {pending} message(s) wait for its next consumer"
                await self._publish("status", agent, "offline", detail, instance=silent_names)
                went_offline.append(agent)
                log.warning("roundtable.agent_offline agent=%s pending=%d", agent, pending)
        if gone:
            await self.bus.map_remove(self._presence, *gone)
        return went_offline

    # --- internals --------------------------------------------------------------------------------

    @property
    def _offline_ms(self) -> int:
        return max(1, int(self.offline_after_s * 1000))

    def _key(self, agent: str, instance: str | None = None) -> str:
        return f"{check_agent(agent)}/{instance or self.instance}"

    def _instances(
        self, agent: str, presence: Mapping[str, str], now: int
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The agent's (instance, last heartbeat) pairs: those heard from lately, and the silent ones."""
        live: list[tuple[str, int]] = []
        silent: list[tuple[str, int]] = []
        prefix = agent + "/"
        for key, value in presence.items():
            if key.startswith(prefix):
                seen = _ms(value)
                (live if now - seen <= self._offline_ms else silent).append((key[len(prefix) :], seen))
        return sorted(live), sorted(silent)

    async def _cards(self) -> dict[str, AgentCard]:
        stored, presence, statuses = await asyncio.gather(
            self.bus.map_get(self._agents),
            self.bus.map_get(self._presence),
            self.bus.map_get(self._status),
        )
        now = _now_ms()
        cards: dict[str, AgentCard] = {}
        for agent, text in stored.items():
            try:
                card = AgentCard.model_validate_json(text)
            except ValidationError as exc:
                log.warning("roundtable.agent_card_unreadable agent=%s error=%s", agent, describe_error(exc))
                continue
            live, silent = self._instances(agent, presence, now)
            _, last_seen = _parse_status(statuses.get(agent))
            last_seen = max([last_seen, *(seen for _, seen in live + silent)])
            cards[agent] = card.model_copy(
                update={
                    "workspace": self.workspace,
                    "status": "online" if live else "offline",
                    "last_seen": datetime.fromtimestamp(last_seen / 1000, UTC) if last_seen else None,
                    "instances": [instance for instance, _ in live],
                }
            )
        return cards

    async def _pending(self, agent: str) -> int:
        """Messages handed to the agent's consumers and not settled."""
        counts = await asyncio.gather(
            *(self.bus.pending_count(lane, INBOX_GROUP) for lane in inbox_lanes(self.workspace, agent))
        )
        return sum(counts)

    async def _publish(
        self, kind: EventKind, agent: str, status: str, detail: str, *, instance: str | None = None
    ) -> None:
        event = BusEvent.now(
            kind, agent, status, detail, instance=self.instance if instance is None else instance
        )
        record = event.record(self.workspace, EVENTS_RETENTION)
        await self.bus.append(record.stream, record.fields, retention=record.retention)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0  # unreadable: as old as can be, so it is swept


def _status_value(status: AgentStatus, last_seen: int) -> str:
    return json.dumps({"status": status, "last_seen": last_seen})


def _parse_status(value: str | None) -> tuple[str, int]:
    """(status, last_seen ms) as last swept; ("", 0) when unknown."""
    if value is None:
        return "", 0
    try:
        data = json.loads(value)
        return str(data.get("status", "")), int(data.get("last_seen", 0))
    except (ValueError, TypeError, AttributeError):
        return "", 0
