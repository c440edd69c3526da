"""Reports stored before `SessionReport` existed load into it unchanged, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from engine.events import SessionCompleted
from engine.report import SessionReport
from storage import SqlStore
from tests.storage.untyped import store_the_old_way, untyped_report


def printed(report: SessionReport) -> str:
    """The report as `ask --json` and `show --json` print it."""
    return json.dumps(report.model_dump(mode="json"), ensure_ascii=False)


async def test_an_untyped_report_in_the_event_log_loads_as_the_same_document(
    store: SqlStore, store_url: str
) -> None:
    session_id = await store_the_old_way(store_url)
    completed = (await store.load_events(session_id))[-1]
    assert isinstance(completed, SessionCompleted)
    assert isinstance(completed.result, SessionReport)
    assert printed(completed.result) == json.dumps(untyped_report(), ensure_ascii=False)


async def test_an_untyped_result_row_loads_as_the_same_document(store: SqlStore, store_url: str) -> None:
    session_id = await store_the_old_way(store_url)
    record = await store.get_session(session_id)
    assert record.result is not None
    assert printed(record.result) == json.dumps(untyped_report(), ensure_ascii=False)
    # What was stored is shown as stored: the rounded consensus of the untyped code is not recomputed.
    assert record.result.tally is not None
    assert record.result.tally.consensus == 0.6667


async def test_untyped_results_count_in_the_stats(store: SqlStore, store_url: str) -> None:
    await store_the_old_way(store_url)
    stats = await store.stats()
    assert stats.sessions == 1
    assert [(r.voting_rule, r.mean_consensus) for r in stats.rules] == [("majority", 0.6667)]
