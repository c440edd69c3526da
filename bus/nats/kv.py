"""Idempotency claims and small shared tables in JetStream KV buckets.

**Claims** (`rt_claims`): one key per claim, its value `"<expires, epoch ms> <holder>"`. Creating a key
is atomic in KV (a publish that expects the key to have no value yet), so the first consumer to read a
message id owns it; a lapsed claim (its lease or done window passed, or released) is taken over with a
compare-and-set on its revision, so two consumers never both win. JetStream 2.9 has no per-key expiry,
so the expiry lives in the value and is compared with this host's wall clock (hosts sharing a bus need
synchronised clocks, as they do for message ttls); the bucket's `max_age`, raised to the longest lease
or done window asked for, removes old keys.

**Tables** (`rt_maps`): one key per table, its value a JSON object of strings, changed by
compare-and-set with retries, so concurrent `map_set`s on different fields both land.

Every batch of keys is read or written in one round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from bus.backend import DONE, Claims, ClaimStatus
from bus.nats.client import (
    STREAM_NAME_IN_USE,
    WRONG_LAST_SEQUENCE,
    ApiError,
    NatsLink,
    Request,
    status_of,
)
from bus.nats.names import CLAIMS_BUCKET, MAPS_BUCKET, claim_key, kv_key
from engine.errors import BusUnavailable

#: Claims are kept at least this long, and longer when a lease or done window asks for it.
DEFAULT_CLAIMS_TTL_MS = 600_000
_LAST_SEQ = "Nats-Expected-Last-Subject-Sequence"
_CAS_ROUNDS = 8
_LAPSED = b"0 "


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's latest value and its revision; `deleted` for a delete marker."""

    value: bytes
    revision: int
    deleted: bool


#: (key, value, expected revision or None for a blind write, extra headers)
Write = tuple[str, bytes, int | None, Mapping[str, str] | None]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _claim(entry: Entry | None) -> tuple[str, int]:
    """(holder, expires ms) of a claim; a missing, deleted or unreadable one has lapsed."""
    if entry is None or entry.deleted:
        return "", 0
    expires, _, holder = entry.value.decode(errors="replace").partition(" ")
    return (holder, int(expires)) if expires.isdigit() else ("", 0)


class Buckets:
    """The claims and tables buckets of one NATS account."""

    def __init__(
        self, link: NatsLink, *, storage: str, replicas: int, claims_ttl_ms: int = DEFAULT_CLAIMS_TTL_MS
    ) -> None:
        self._link = link
        self._storage = storage
        self._replicas = replicas
        self._claims_ttl_ms = claims_ttl_ms
        self._ready = False

    def _config(self, bucket: str, ttl_ms: int) -> dict[str, Any]:
        ttl_ns = ttl_ms * 1_000_000
        return {
            "name": f"KV_{bucket}",
            "subjects": [f"$KV.{bucket}.>"],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "discard": "new",
            "allow_rollup_hdrs": True,
            "deny_delete": True,
            "allow_direct": True,
            "max_age": ttl_ns,
            "duplicate_window": min(ttl_ns, 120_000_000_000) if ttl_ns else 120_000_000_000,
            "storage": self._storage,
            "num_replicas": self._replicas,
        }

    async def ensure(self) -> None:
        """Create both buckets unless they exist (an existing bucket keeps its settings)."""
        if self._ready:
            return
        answers = await self._link.api_many(
            [
                (f"STREAM.CREATE.KV_{CLAIMS_BUCKET}", self._config(CLAIMS_BUCKET, self._claims_ttl_ms)),
                (f"STREAM.CREATE.KV_{MAPS_BUCKET}", self._config(MAPS_BUCKET, 0)),
            ]
        )
        claims_info = answers[0]
        for answer in answers:
            if isinstance(answer, ApiError) and answer.err_code != STREAM_NAME_IN_USE:
                with self._link.errors:
                    raise answer
        if isinstance(claims_info, ApiError):  # made before, perhaps with a longer ttl: keep it
            info = await self._api("STREAM.INFO", f"KV_{CLAIMS_BUCKET}")
            self._claims_ttl_ms = max(self._claims_ttl_ms, int(info["config"]["max_age"]) // 1_000_000)
        self._ready = True

    async def keep_claims_for(self, ms: int) -> None:
        """Raise the claims bucket's max_age so that a claim lives at least `ms` (plus a margin)."""
        await self.ensure()
        wanted = ms + 60_000
        if wanted <= self._claims_ttl_ms:
            return
        await self._api("STREAM.UPDATE", f"KV_{CLAIMS_BUCKET}", self._config(CLAIMS_BUCKET, wanted))
        self._claims_ttl_ms = wanted

    async def _api(self, verb: str, name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self._link.errors:
            return await self._link.api(f"{verb}.{name}", body)

    # --- raw KV -----------------------------------------------------------------------------------

    async def _send(self, requests: Sequence[Request]) -> list[Msg]:
        """Send KV requests; when the bucket is gone (a server restarted without its store), make the
        buckets again and send once more."""
        await self.ensure()
        replies = await self._link.request_many(requests)
        if any(status_of(reply) == "503" for reply in replies):
            self._ready = False
            await self.ensure()
            replies = await self._link.request_many(requests)
        for reply in replies:
            if status_of(reply) == "503":
                raise BusUnavailable(f"nats at {self._link.where} failed: a KV bucket does not answer")
        return replies

    async def get_many(self, bucket: str, keys: Sequence[str]) -> list[Entry | None]:
        replies = await self._send(
            [
                (
                    f"$JS.API.DIRECT.GET.KV_{bucket}",
                    json.dumps({"last_by_subj": f"$KV.{bucket}.{key}"}).encode(),
                    None,
                )
                for key in keys
            ]
        )
        entries: list[Entry | None] = []
        for reply in replies:
            status = status_of(reply)
            if status == "404":
                entries.append(None)
                continue
            if status is not None:
                raise BusUnavailable(
                    f"nats at {self._link.where} failed: KV bucket {bucket} answered {status}"
                )
            headers = reply.headers or {}
            deleted = headers.get("KV-Operation") in ("DEL", "PURGE")
            entries.append(Entry(reply.data, int(headers.get("Nats-Sequence", "0")), deleted))
        return entries

    async def put_many(self, bucket: str, writes: Sequence[Write]) -> list[int | None]:
        """Write values; each one's new revision, or None when its expected revision did not match."""
        requests: list[Request] = []
        for key, value, expected, extra in writes:
            headers = dict(extra or {})
            if expected is not None:
                headers[_LAST_SEQ] = str(expected)
            requests.append((f"$KV.{bucket}.{key}", value, headers or None))
        revisions: list[int | None] = []
        for reply in await self._send(requests):
            answer = json.loads(reply.data)
            error = answer.get("error")
            if error and int(error.get("err_code", 0)) == WRONG_LAST_SEQUENCE:
                revisions.append(None)
            elif error:
                raise BusUnavailable(f"nats at {self._link.where} failed: {error.get('description')}")
            else:
                revisions.append(int(answer["seq"]))
        return revisions

    def _check_stored(self, reply: Msg) -> None:
        if status_of(reply) == "503":
            self._ready = False
            raise BusUnavailable(f"nats at {self._link.where} failed: the claims bucket is gone")
        error = json.loads(reply.data).get("error")
        if error:
            raise BusUnavailable(f"nats at {self._link.where} failed: {error.get('description')}")

    # --- claims -----------------------------------------------------------------------------------

    async def take(self, claims: Claims, message_ids: Sequence[str | None]) -> list[ClaimStatus]:
        """Claim message ids for `claims.owner` (see `Claims`); the status of each, in order."""
        wanted = {m: claim_key(claims.scope, m) for m in message_ids if m is not None}
        if not wanted:
            return ["new"] * len(message_ids)
        await self.keep_claims_for(claims.lease_ms)
        now = _now_ms()
        mine = f"{now + claims.lease_ms} {claims.owner}".encode()
        found: dict[str, ClaimStatus] = {}
        keys = list(dict.fromkeys(wanted.values()))
        writes: list[Write] = [(key, mine, 0, None) for key in keys]  # most ids are new: try to create
        for _ in range(_CAS_ROUNDS):
            revisions = await self.put_many(CLAIMS_BUCKET, writes)
            lost = []
            for (key, *_), revision in zip(writes, revisions, strict=True):
                if revision is None:
                    lost.append(key)
                else:
                    found[key] = "new"
            if not lost:
                break
            writes = []
            for key, entry in zip(lost, await self.get_many(CLAIMS_BUCKET, lost), strict=True):
                holder, expires = _claim(entry)
                if expires <= now or holder == claims.owner:
                    writes.append((key, mine, entry.revision if entry else 0, None))
                else:
                    found[key] = "done" if holder == DONE else "busy"
            if not writes:
                break
        return ["new" if m is None else found.get(wanted[m], "busy") for m in message_ids]

    async def mark_done(self, claims: Claims, message_ids: Sequence[str], done_ms: int) -> None:
        """Mark ids handled, in one write; the bucket's answer to the last says all were stored."""
        if not message_ids:
            return
        await self.keep_claims_for(done_ms)
        done = f"{_now_ms() + done_ms} {DONE}".encode()
        batch = [(f"$KV.{CLAIMS_BUCKET}.{claim_key(claims.scope, m)}", done, None) for m in message_ids]
        [reply] = await self._link.confirm_many([batch])
        self._check_stored(reply)

    async def release(self, claims: Claims, message_ids: Sequence[str]) -> None:
        """Drop the claims this owner still holds (a lapsed value; a write by anyone else wins)."""
        await self._rewrite(
            claims, message_ids, lambda holder, _: _LAPSED if holder == claims.owner else None
        )

    async def renew(self, claims: Claims, message_ids: Sequence[str]) -> None:
        """Give live claims another lease, whoever holds them, never shortening one (PEXPIRE GT on
        Redis): a done mark written meanwhile keeps its longer window."""
        until = _now_ms() + claims.lease_ms
        await self._rewrite(
            claims,
            message_ids,
            lambda holder, expires: f"{until} {holder}".encode() if until > expires else None,
        )

    async def _rewrite(
        self, claims: Claims, message_ids: Sequence[str], change: Callable[[str, int], bytes | None]
    ) -> None:
        if not message_ids:
            return
        keys = list(dict.fromkeys(claim_key(claims.scope, m) for m in message_ids))
        now = _now_ms()
        writes: list[Write] = []
        for key, entry in zip(keys, await self.get_many(CLAIMS_BUCKET, keys), strict=True):
            holder, expires = _claim(entry)
            value = change(holder, expires) if entry is not None and expires > now else None
            if entry is not None and value is not None:
                writes.append((key, value, entry.revision, None))
        await self.put_many(CLAIMS_BUCKET, writes)  # a conflict means someone else moved on: theirs stands

    # --- tables -----------------------------------------------------------------------------------

    async def map_get(self, key: str) -> dict[str, str]:
        [entry] = await self.get_many(MAPS_BUCKET, [kv_key(key)])
        return _table(entry)

    async def map_change(self, key: str, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Apply `change` to a table by compare-and-set, retrying when another writer got in first."""
        name = kv_key(key)
        for _ in range(_CAS_ROUNDS * 4):
            [entry] = await self.get_many(MAPS_BUCKET, [name])
            current = _table(entry)
            updated = change(dict(current))
            if updated == current:
                return
            revision = entry.revision if entry is not None else 0
            if updated:
                write: Write = (name, json.dumps(updated).encode(), revision, None)
            else:
                write = (name, b"", revision, {"KV-Operation": "DEL"})
            [stored] = await self.put_many(MAPS_BUCKET, [write])
            if stored is not None:
                return
        raise BusUnavailable(
            f"nats at {self._link.where} failed: table {key!r} kept changing under this write; try again"
        )

    async def map_purge(self, keys: Sequence[str]) -> None:
        await self.ensure()
        answers = await self._link.api_many(
            [(f"STREAM.PURGE.KV_{MAPS_BUCKET}", {"filter": f"$KV.{MAPS_BUCKET}.{kv_key(k)}"}) for k in keys]
        )
        for answer in answers:
            if isinstance(answer, ApiError):
                with self._link.errors:
                    raise answer


def _table(entry: Entry | None) -> dict[str, str]:
    if entry is None or entry.deleted or not entry.value:
        return {}
    table = json.loads(entry.value)
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}
