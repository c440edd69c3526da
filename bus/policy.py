"""Who may send commands in a workspace, and the audit trail of the commands refused.

A `command` message asks its recipient to act (stop, reload, hand over work), so it is accepted only
from a sender whose role the workspace allows. The policy lives on the bus (`rt:{ws}:policy` and
`rt:{ws}:roles`), written by the host, so every process, sandboxes included, reads the same one. It is
checked twice: by the sender, which gets `CommandRefused`, and by the receiver, which does not trust
the sender to have checked. Either refusal appends an `AuditRecord` to `rt:{ws}:audit`.

The sender's identity is the message's `from_agent`; a later issue makes the bus vouch for it (each
sandbox may write only as itself), until then a policy keeps honest senders honest.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bus.addressing import audit_key, policy_key, roles_key
from bus.backend import Bus, Record, Retention
from bus.message import AgentMessage, describe_error
from engine.errors import BadRequest

#: The role of a sender the workspace names no role for.
DEFAULT_ROLE = "agent"
#: Roles allowed to send commands when a workspace has stored no policy.
DEFAULT_COMMAND_ROLES = frozenset({"host"})


class CommandPolicy(BaseModel):
    """Roles of senders, and which roles may send commands. Unnamed senders have `DEFAULT_ROLE`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_roles: frozenset[str] = DEFAULT_COMMAND_ROLES
    roles: dict[str, str] = Field(default_factory=dict)

    def role_of(self, agent: str) -> str:
        return self.roles.get(agent, DEFAULT_ROLE)

    def refusal(self, message: AgentMessage) -> str | None:
        """Why the message is refused, or None when it is not a command or its sender may send one."""
        if message.message_type != "command":
            return None
        role = self.role_of(message.from_agent)
        if role in self.command_roles:
            return None
        allowed = ", ".join(sorted(self.command_roles)) or "none"
        return (
            f"{message.from_agent!r} has role {role!r}, which may not send commands in workspace "
            f"{message.workspace_id!r}; roles allowed: {allowed}"
        )


async def fetch_policy(bus: Bus, workspace: str) -> CommandPolicy:
    """The workspace's stored policy; the default one (only "host" may command) when none is stored."""
    stored, roles = await asyncio.gather(
        bus.map_get(policy_key(workspace)), bus.map_get(roles_key(workspace))
    )
    listed = stored.get("command_roles")
    command_roles = DEFAULT_COMMAND_ROLES if listed is None else frozenset(r for r in listed.split(",") if r)
    return CommandPolicy(command_roles=command_roles, roles=roles)


async def store_policy(bus: Bus, workspace: str, policy: CommandPolicy) -> None:
    """Replace the workspace's policy (roles not named any more are removed)."""
    old_roles = await bus.map_get(roles_key(workspace))
    gone = [agent for agent in old_roles if agent not in policy.roles]
    if gone:
        await bus.map_remove(roles_key(workspace), *gone)
    await bus.map_set(roles_key(workspace), policy.roles)
    await bus.map_set(policy_key(workspace), {"command_roles": ",".join(sorted(policy.command_roles))})


class AuditRecord(BaseModel):
    """One refused command, as kept in the workspace's audit stream."""

    model_config = ConfigDict(frozen=True)

    event: Literal["command_refused"] = "command_refused"
    at: datetime
    #: Where it was refused: by the sender's mailbox, or by the recipient's.
    where: Literal["send", "receive"]
    message_id: str
    from_agent: str
    from_sandbox: str
    to_agent: str
    role: str
    reason: str

    @classmethod
    def refused(
        cls, message: AgentMessage, policy: CommandPolicy, *, where: Literal["send", "receive"], reason: str
    ) -> AuditRecord:
        return cls(
            at=datetime.now(UTC),
            where=where,
            message_id=message.message_id,
            from_agent=message.from_agent,
            from_sandbox=message.from_sandbox,
            to_agent=message.to_agent,
            role=policy.role_of(message.from_agent),
            reason=reason,
        )

    def record(self, workspace: str, retention: Retention | None) -> Record:
        fields = {name: str(value) for name, value in self.model_dump(mode="json").items()}
        return Record(audit_key(workspace), fields, retention)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> AuditRecord:
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise BadRequest(f"not an audit record: {describe_error(exc)}") from None


async def fetch_audit(
    bus: Bus, workspace: str, *, after: str | None = None, count: int = 100
) -> list[tuple[str, AuditRecord]]:
    """Audit records (entry id, record) in order, after entry id `after`."""
    rows = await bus.entries(audit_key(workspace), after=after, count=count)
    return [(entry_id, AuditRecord.from_fields(fields)) for entry_id, fields in rows]
