"""Where messages go: the keys of a workspace, priority lanes, and who receives a message.

Every key of a workspace sits under `rt:{<workspace>}:`, so a later Redis ACL can give each sandbox
`~rt:{ws}:inbox:<agent>:*` and little else, and Redis Cluster keeps a workspace on one shard:

| key | type | holds |
| --- | --- | --- |
| `rt:{ws}:inbox:<agent>:p<0-9>` | stream | the agent's messages, one lane per priority |
| `rt:{ws}:members` | hash | agent -> sandbox: who is registered (broadcast, unknown recipients) |
| `rt:{ws}:topic:<topic>` | hash | agent -> sandbox: who follows the topic |
| `rt:{ws}:seen:<agent>:<group>:<message id>` | string | idempotency claim (owner, or done) |
| `rt:{ws}:dlq` | stream | dead letters, with reason and delivery count |
| `rt:{ws}:dlq:replayed` | hash | dead letter id -> when it was replayed, and as which entry |
| `rt:{ws}:audit` | stream | refused commands |
| `rt:{ws}:policy`, `rt:{ws}:roles` | hash | which roles may send commands; each agent's role |

This module is pure: it names keys and decides recipients, and never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bus.backend import stream_key
from bus.message import ANY_AGENT, BROADCAST, AgentMessage
from engine.errors import BadRequest, UnknownRecipient

#: One lane per priority 0-9: a lane is read only when every higher one is empty.
LANES = 10
#: The consumer group of an inbox: every consumer of the same agent shares it.
INBOX_GROUP = "inbox"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,127}")
_RESERVED = frozenset({ANY_AGENT, BROADCAST})


def check_agent(agent: str) -> str:
    """An agent id fit for a key: 1-64 letters, digits, '_', '.', '-', and not 'any' or 'broadcast'."""
    if not _NAME.fullmatch(agent) or agent in _RESERVED:
        raise BadRequest(
            f"agent id {agent!r} cannot be used on the bus; use 1-64 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, other than {', '.join(sorted(_RESERVED))}"
        )
    return agent


def check_topic(topic: str) -> str:
    """A topic name fit for a key: 1-128 letters, digits, '_', '.', '/', '-'."""
    if not _TOPIC.fullmatch(topic):
        raise BadRequest(
            f"topic {topic!r} cannot be used on the bus; use 1-128 letters, digits, '_', '.', '/' or '-', "
            "starting with a letter or digit"
        )
    return topic


def inbox_key(workspace: str, agent: str, priority: int) -> str:
    """The stream of one of an agent's lanes: `rt:{ws}:inbox:<agent>:p<priority>`."""
    if not 0 <= priority < LANES:
        raise BadRequest(f"priority must be 0-{LANES - 1}, got {priority}")
    return stream_key(workspace, "inbox", agent, f"p{priority}")


def inbox_lanes(workspace: str, agent: str) -> list[str]:
    """An agent's lanes in the order they are read: highest priority first."""
    return [inbox_key(workspace, agent, priority) for priority in reversed(range(LANES))]


def members_key(workspace: str) -> str:
    return stream_key(workspace, "members")


def topic_key(workspace: str, topic: str) -> str:
    return stream_key(workspace, "topic", check_topic(topic))


def claim_scope(workspace: str, agent: str, group: str) -> str:
    """The prefix of an inbox group's idempotency claims; the message id completes the key."""
    return stream_key(workspace, "seen", agent, group) + ":"


def dlq_key(workspace: str) -> str:
    return stream_key(workspace, "dlq")


def dlq_replayed_key(workspace: str) -> str:
    """The table of replayed dead letters: dead letter id -> when, and the entry it was sent again as."""
    return stream_key(workspace, "dlq", "replayed")


def audit_key(workspace: str) -> str:
    return stream_key(workspace, "audit")


def policy_key(workspace: str) -> str:
    return stream_key(workspace, "policy")


def roles_key(workspace: str) -> str:
    return stream_key(workspace, "roles")


def is_fan_out(message: AgentMessage) -> bool:
    """Whether the message goes to many: `to_agent` is "any" (a broadcast, or a topic's followers)."""
    return message.to_agent == ANY_AGENT


def recipients(
    message: AgentMessage,
    members: Mapping[str, str],
    *,
    followers: Mapping[str, str] | None = None,
) -> list[str]:
    """The agents a message is delivered to, sorted.

    - `to_agent` names an agent: that agent, which must be a member (in `to_sandbox`, unless that is
      "broadcast").
    - `to_agent` is "any" and the message has a topic: the topic's `followers` that are members.
    - `to_agent` is "any" without a topic: every member (a broadcast).

    A fan-out never returns to its sender, and `to_sandbox` other than "broadcast" narrows it to the
    members in that sandbox. `members` and `followers` map agent -> sandbox.

    Raises:
        UnknownRecipient: `to_agent` is not a member, or not in `to_sandbox`.
    """
    target = message.to_agent
    if target != ANY_AGENT:
        sandbox = members.get(target)
        if sandbox is None:
            known = ", ".join(sorted(members)) or "none"
            raise UnknownRecipient(
                f"no agent {target!r} is registered in workspace {message.workspace_id!r}; members: {known}"
            )
        if message.to_sandbox not in (BROADCAST, sandbox):
            raise UnknownRecipient(
                f"agent {target!r} is in sandbox {sandbox!r}, not {message.to_sandbox!r}; "
                "address its sandbox or 'broadcast'"
            )
        return [target]
    pool = members if message.topic is None else (followers or {})
    return sorted(
        agent
        for agent, sandbox in pool.items()
        if agent != message.from_agent and agent in members and message.to_sandbox in (BROADCAST, sandbox)
    )
