"""How bus keys become NATS names: subjects, JetStream stream and consumer names, KV keys.

A key such as `rt:{default}:inbox:analyst:p9` becomes the subject `rt.default.inbox.analyst.p9`, so
NATS permissions can hand a sandbox `rt.<workspace>.inbox.<agent>.>` the way a Redis ACL would hand
it `~rt:{ws}:inbox:<agent>:*`. Each part between colons is escaped on its own: letters, digits and
'-' stay, every other byte becomes '_' and two hex digits ('.' is '_2e', '_' is '_5f', ' ' is '_20'),
and an empty part becomes a lone '_'. The mapping is one-to-one, so two keys never share a subject;
keys outside the `rt:{ws}:` shape go under `rtx.` so they cannot meet a workspace's subjects.

This module is pure: it names things and never does I/O.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string

_SAFE = frozenset(string.ascii_letters + string.digits + "-")
_HASH_TAGGED = re.compile(r"rt:\{([^{}]*)\}:(.*)", re.DOTALL)
#: Stream and consumer names are directory names on the server: long ones end in a digest instead.
MAX_NAME = 120
#: KV buckets holding the idempotency claims and the small shared tables (`map_*`).
CLAIMS_BUCKET = "rt_claims"
MAPS_BUCKET = "rt_maps"
#: The stream that keeps the server's max-deliveries advisories: entries JetStream gave up on.
DEAD_LETTER_STREAM = "rt~max-deliveries"
DEAD_LETTER_SUBJECT = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"


def escape(part: str) -> str:
    """One key part as a subject token of letters, digits, '-' and '_' escapes."""
    if not part:
        return "_"
    if all(ch in _SAFE for ch in part):
        return part
    out: list[str] = []
    for ch in part:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"_{byte:02x}" for byte in ch.encode())
    return "".join(out)


@functools.lru_cache(maxsize=65536)
def subject(key: str) -> str:
    """The subject a stream key's entries are published on, e.g. `rt.default.inbox.analyst.p9`."""
    tagged = _HASH_TAGGED.fullmatch(key)
    if tagged:
        parts = ["rt", escape(tagged[1]), *(escape(p) for p in tagged[2].split(":"))]
    else:
        parts = ["rtx", *(escape(p) for p in key.split(":"))]
    return ".".join(parts)


def workspace_subjects(workspace: str) -> str:
    """The wildcard covering every subject of a workspace."""
    return f"rt.{escape(workspace)}.>"


@functools.lru_cache(maxsize=65536)
def stream_name(key: str) -> str:
    """The JetStream stream holding one bus stream: its subject with '~' for '.'."""
    return _bounded(subject(key).replace(".", "~"))


@functools.lru_cache(maxsize=65536)
def consumer_name(group: str) -> str:
    """The durable consumer of a consumer group (names are per stream, so the group alone will do)."""
    return _bounded(escape(group))


def kv_key(key: str) -> str:
    """A bus key as a KV key: the subject form, which only uses characters KV keys allow."""
    return subject(key)


def claim_key(scope: str, message_id: str) -> str:
    """`kv_key(scope + message_id)`, with the scope's part worked out once (claims are hot)."""
    if not scope.endswith(":"):
        return kv_key(scope + message_id)
    return _scope_prefix(scope) + ".".join(escape(part) for part in message_id.split(":"))


@functools.lru_cache(maxsize=4096)
def _scope_prefix(scope: str) -> str:
    return subject(scope + "-")[:-1]  # the subject of scope + a one-character part, without that part


def _bounded(name: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{name[: MAX_NAME - 34]}~~{digest}"
