"""A session as the code before the typed `SessionReport` stored it, and a way to write it back raw.

`golden/untyped_session.json` holds the event payloads of one real session (a one-round majority vote
of the compact team, against the fake LLM), read from the events table the untyped code wrote. Its
`session_completed` event carries the report as that code built it: a plain dict, its consensus rounded
to 4 decimals (0.6667).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from storage import SqlStore, create_engine
from storage.models import events, sessions

UNTYPED = Path(__file__).resolve().parent / "golden" / "untyped_session.json"


def untyped_session() -> tuple[str, list[dict[str, Any]]]:
    """The session id and its event payloads, in append order."""
    data = json.loads(UNTYPED.read_text(encoding="utf-8"))
    return data["session_id"], data["events"]


def untyped_report() -> dict[str, Any]:
    """The report the untyped code stored: the `result` of the session's `session_completed` event."""
    _, payloads = untyped_session()
    result: dict[str, Any] = payloads[-1]["result"]
    return result


async def store_the_old_way(url: str) -> str:
    """Write the fixture session into the database at `url` as the untyped code did; its id.

    The rows go in with plain INSERTs, so nothing of today's code (models, store) touches them on the
    way in: the session row with its result dict, and each event's payload as it was stored.
    """
    await (await SqlStore.open(url)).close()  # the schema, migrated to the newest revision
    session_id, payloads = untyped_session()
    started, completed = payloads[0], payloads[-1]
    config = started["config"]
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sessions.insert().values(
                    id=session_id,
                    status="completed",
                    topic=config["topic"],
                    voting_rule=config["voting_rule"],
                    team=config["team"],
                    config=config,
                    meta=started["metadata"],
                    result=completed["result"],
                    created_at=_at(started),
                    updated_at=_at(completed),
                    completed_at=_at(completed),
                )
            )
            await connection.execute(
                events.insert(),
                [
                    {
                        "session_id": session_id,
                        "seq": seq,
                        "kind": payload["kind"],
                        "step": payload.get("step", ""),
                        "agent": payload.get("agent", ""),
                        "payload": payload,
                        "created_at": _at(payload),
                    }
                    for seq, payload in enumerate(payloads, 1)
                ],
            )
    finally:
        await engine.dispose()
    return session_id


def _at(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["at"])
