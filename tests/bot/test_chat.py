"""The chat core through the real stack (Redis bus and rate limit, SQLite, LiteLLM to the fake LLM).

The presenter here is the adapter's side of the port: it records what a platform would show.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot import Runtime, SessionRequest, Settings
from bot.chat import (
    ChatOrigin,
    ChatResult,
    ChatService,
    Ignored,
    Replied,
    SessionNotFound,
    Started,
    button_id,
    parse_button_id,
)
from bot.chat.pump import ProgressPump
from bot.views import ProgressTracker, ProgressView
from bot.views.chart import vote_chart_png
from bot.views.result import VoteBar
from engine.progress import Progress
from engine.report import SessionReport
from personas import load_personas
from tests.fakes.fake_llm import FakeLLM

PNG = b"\x89PNG\r\n\x1a\n"
DILEMMA = "What are the pros and cons of moving our team to a four-day week?"


@dataclass
class Recorder:
    """Records each presenter call as (name, payload)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_on: str | None = None

    async def started(self, session_id: str, view: ProgressView) -> None:
        self._record("started", (session_id, view))

    async def progress(self, view: ProgressView) -> None:
        self._record("progress", view)

    async def finished(self, result: ChatResult) -> None:
        self._record("finished", result)

    async def failed(self, message: str) -> None:
        self._record("failed", message)

    def _record(self, name: str, payload: Any) -> None:
        if name == self.fail_on:
            raise RuntimeError(f"platform refused {name}")
        self.calls.append((name, payload))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def last(self, name: str) -> Any:
        return [payload for n, payload in self.calls if n == name][-1]


def origin(user: str = "U1", channel: str = "C1", platform: str = "discord", **kw: Any) -> ChatOrigin:
    return ChatOrigin(platform=platform, channel_id=channel, user_id=user, **kw)


@pytest.fixture
def chat_for(settings_for: Callable[..., Settings]) -> Callable[..., Any]:
    opened: list[tuple[Runtime, ChatService]] = []

    async def make(**overrides: Any) -> ChatService:
        overrides.setdefault("progress_interval_s", 0.0)
        runtime = await Runtime.open(settings_for(**overrides))
        service = await ChatService.open(runtime)
        opened.append((runtime, service))
        return service

    make.opened = opened  # type: ignore[attr-defined]
    return make


@pytest.fixture
async def chat(chat_for: Callable[..., Any]) -> AsyncIterator[ChatService]:
    service = await chat_for()
    yield service
    for runtime, svc in chat_for.opened:  # type: ignore[attr-defined]
        await svc.close()
        await runtime.close()


async def finish(outcome: Any) -> SessionReport:
    assert isinstance(outcome, Started), outcome
    report = await asyncio.wait_for(outcome.task, 60)
    assert report is not None
    return report


async def test_a_command_runs_a_session_and_presents_it(chat: ChatService) -> None:
    rec = Recorder()
    outcome = await chat.handle("!roundtable Tabs or spaces? --rounds 1 --voting ranked", origin(), rec)
    assert isinstance(outcome, Started)
    assert rec.names()[0] == "started"  # posted before handle returned
    report = await finish(outcome)
    assert report.voting_rule == "ranked"
    assert report.rounds_planned == 1
    names = rec.names()
    assert names[-1] == "finished"
    assert "failed" not in names
    progress = [view for name, view in rec.calls if name == "progress"]
    assert progress
    assert progress[-1].finished
    assert any(a.status == "typing" for view in progress for a in view.agents)
    result: ChatResult = rec.last("finished")
    assert result.session_id == outcome.session_id == report.session_id
    assert result.view.decided
    assert result.chart_png is not None
    assert result.chart_png.startswith(PNG)
    stored = await chat.runtime.store.get_session(outcome.session_id)
    assert ChatOrigin.from_metadata(stored.metadata) == origin()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!roundtable", "Usage"),
        ("!roundtable --help", "Usage"),
        ("!roundtable Tabs? --voting plurality", "majority, rated, ranked, unanimity, approval, condorcet"),
        ("!roundtable Tabs? --rounds 9", "1-5"),
        ("!roundtable --rounds 2", "topic"),
    ],
)
async def test_usage_and_invalid_commands_reply_one_line(chat: ChatService, text: str, expected: str) -> None:
    rec = Recorder()
    outcome = await chat.handle(text, origin(), rec)
    assert isinstance(outcome, Replied)
    assert expected.lower() in outcome.text.lower()
    assert rec.calls == []
    assert await chat.runtime.store.list_sessions() == []


async def test_a_topic_over_the_limit_is_refused_before_it_costs_a_session(chat: ChatService) -> None:
    outcome = await chat.handle("!roundtable " + "why " * 1200, origin(), Recorder())
    assert isinstance(outcome, Replied)
    assert "4000" in outcome.text
    again = await chat.handle("!roundtable " + "why " * 999 + "?", origin(), rec := Recorder())  # 4,000 chars
    assert len("why " * 999 + "?") <= 4000
    await finish(again)
    assert rec.names()[-1] == "finished"


async def test_triggers_need_a_mention_or_a_listed_channel(
    chat_for: Callable[..., Any], chat: ChatService
) -> None:
    assert isinstance(await chat.handle(DILEMMA, origin(), Recorder()), Ignored)
    hint = await chat.handle("hello there", origin(), Recorder(), mentioned=True)
    assert isinstance(hint, Replied)
    assert "!roundtable" in hint.text
    # "or" inside a word is not a choice
    assert isinstance(
        await chat.handle("Is the vendor ready?", origin(), Recorder(), mentioned=True), Replied
    )
    rec = Recorder()
    report = await finish(await chat.handle(DILEMMA, origin(), rec, mentioned=True))
    assert report.topic == DILEMMA
    listed = await chat_for(trigger_channels="C9")
    assert isinstance(await listed.handle(DILEMMA, origin(channel="C9"), Recorder()), Started)
    quiet = await chat_for(auto_trigger=False)
    assert isinstance(await quiet.handle(DILEMMA, origin(), Recorder(), mentioned=True), Replied)


async def test_allowlist_and_admin_roles(chat_for: Callable[..., Any], chat: ChatService) -> None:
    guarded = await chat_for(enabled_users="U7,slack:U8", admin_roles="Moderators")
    refused = await guarded.handle(
        "!roundtable Tabs or spaces? --rounds 1", origin(user="U1"), rec := Recorder()
    )
    assert isinstance(refused, Replied)
    assert "enabled users" in refused.text
    assert rec.calls == []
    await finish(await guarded.handle("!roundtable Tabs? --rounds 1", origin(user="U7"), Recorder()))
    await finish(
        await guarded.handle("!roundtable Tabs? --rounds 1", origin(user="U8", platform="slack"), Recorder())
    )
    await finish(
        await guarded.handle(
            "!roundtable Tabs? --rounds 1", origin(user="U1", roles=("123", "Moderators")), Recorder()
        )
    )


async def test_the_rate_limit_is_per_user_and_survives_a_restart(
    chat_for: Callable[..., Any], chat: ChatService
) -> None:
    first = await chat_for(sessions_per_channel=5, admin_roles="Admins")
    for n in range(3):
        await finish(await first.handle(f"!roundtable Question {n}? --rounds 1", origin(), Recorder()))
    # a new service on the same Redis, as after a restart, remembers the window
    second = await chat_for(sessions_per_channel=5, admin_roles="Admins", workspace=first.settings.workspace)
    refused = await second.handle("!roundtable Question 4? --rounds 1", origin(), rec := Recorder())
    assert isinstance(refused, Replied)
    assert "3 sessions in the last hour" in refused.text
    assert "try again in" in refused.text
    assert rec.calls == []
    # another user, and an admin, are not limited by it
    await finish(await second.handle("!roundtable Other? --rounds 1", origin(user="U2"), Recorder()))
    for _ in range(4):
        await finish(
            await second.handle(
                "!roundtable Admin? --rounds 1", origin(user="U3", roles=("Admins",)), Recorder()
            )
        )
    # an invalid request does not use up a session
    fresh = origin(user="U4")
    for _ in range(5):
        assert isinstance(await second.handle("!roundtable X? --voting nope", fresh, Recorder()), Replied)
    await finish(await second.handle("!roundtable X? --rounds 1", fresh, Recorder()))


async def test_one_running_session_per_channel(chat: ChatService, fake_llm: FakeLLM) -> None:
    fake_llm.set(latency_s=0.3)
    first = await chat.handle("!roundtable Slow one? --rounds 1", origin(channel="C5"), Recorder())
    assert isinstance(first, Started)
    busy = await chat.handle("!roundtable Another? --rounds 1", origin(user="U2", channel="C5"), Recorder())
    assert isinstance(busy, Replied)
    assert "already running in this channel" in busy.text
    elsewhere = await chat.handle(
        "!roundtable Elsewhere? --rounds 1", origin(user="U2", channel="C6"), Recorder()
    )
    assert isinstance(elsewhere, Started)
    fake_llm.set(latency_s=0.0)
    await finish(first)
    await finish(elsewhere)
    await finish(
        await chat.handle("!roundtable Now? --rounds 1", origin(user="U2", channel="C5"), Recorder())
    )


async def test_a_flaky_llm_still_gives_a_result_with_a_degraded_notice(
    chat: ChatService, fake_llm: FakeLLM
) -> None:
    fake_llm.set(error_rate=0.5, fail_status=400, seed=3)  # 400: not retried
    rec = Recorder()
    report = await finish(await chat.handle("!roundtable Flaky? --rounds 2 --team full", origin(), rec))
    assert report.status == "completed"
    result: ChatResult = rec.last("finished")
    assert report.degraded
    assert result.view.degraded is not None
    assert len(result.view.degraded.entries) == len(report.degraded)


async def test_a_result_that_cannot_be_posted_is_reported_not_swallowed(chat: ChatService) -> None:
    rec = Recorder(fail_on="finished")
    outcome = await chat.handle("!roundtable Tabs? --rounds 1", origin(), rec)
    assert isinstance(outcome, Started)
    await finish(outcome)
    message = rec.last("failed")
    assert "could not be posted" in message
    assert f"roundtable show {outcome.session_id}" in message


async def test_sessions_left_running_resume_in_their_channel(
    chat_for: Callable[..., Any], chat: ChatService, fake_llm: FakeLLM
) -> None:
    fake_llm.set(latency_s=0.2)
    first = await chat_for()
    ws = first.settings.workspace
    crashed = await first.handle(
        "!roundtable Crash me? --rounds 2", origin(channel="C42", thread_id="T1"), Recorder()
    )
    other = await first.handle(
        "!roundtable Slack one? --rounds 2", origin(platform="slack", channel="S1"), Recorder()
    )
    assert isinstance(crashed, Started)
    assert isinstance(other, Started)
    await asyncio.sleep(0.5)
    await first.close()  # the process dies; the sessions stay `running`
    assert (await first.runtime.store.get_session(crashed.session_id)).status == "running"
    fake_llm.set(latency_s=0.0)

    second = await chat_for(workspace=ws)
    asked: list[tuple[ChatOrigin, str]] = []
    recorders: dict[str, Recorder] = {}

    async def presenter_for(where: ChatOrigin, session_id: str) -> Recorder:
        asked.append((where, session_id))
        return recorders.setdefault(session_id, Recorder())

    resumed = await second.resume_interrupted("discord", presenter_for)
    assert [s.session_id for s in resumed] == [crashed.session_id]
    assert asked == [(origin(channel="C42", thread_id="T1"), crashed.session_id)]
    report = await finish(resumed[0])
    assert report.status == "completed"
    assert recorders[crashed.session_id].names()[-1] == "finished"
    slack = await second.resume_interrupted("slack", presenter_for)
    assert [s.session_id for s in slack] == [other.session_id]
    await finish(slack[0])


async def test_buttons_read_the_stored_session(chat_for: Callable[..., Any], chat: ChatService) -> None:
    report = await finish(await chat.handle("!roundtable Tabs? --rounds 2 --team full", origin(), Recorder()))
    session_id = report.session_id
    later = await chat_for(workspace=chat.settings.workspace)  # as after a restart
    ref = parse_button_id(button_id("proposals", session_id, 2))
    assert ref is not None
    assert (ref.action, ref.session_id, ref.page) == ("proposals", session_id, 2)
    pages = await later.pages(session_id, "proposals", page_chars=800)
    text = "\n".join(page.body for page in pages)
    for proposal in report.proposals:
        assert proposal.title in text
    assert all(len(page.body) <= 800 for page in pages)
    discussion = await later.pages(session_id, "discussion", page_chars=1000)
    assert sum(len(p.body) for p in discussion) >= sum(len(t.content) for t in report.transcript)
    stats = await later.statistics(session_id)
    assert {a.agent.id for a in stats.agents} == set(report.team)
    result = await later.result(session_id)
    assert report.winner is not None
    assert result.view.winner_id == report.winner.id
    with pytest.raises(SessionNotFound):
        await later.pages("deadbeef0000", "discussion", page_chars=1000)


@pytest.mark.parametrize(
    "custom_id", ["rt:vote:abc:0", "rt:stats:abc", "other:stats:abc:0", "rt:stats:a b:0", ""]
)
def test_foreign_button_ids_are_not_ours(custom_id: str) -> None:
    assert parse_button_id(custom_id) is None


def test_button_ids_fit_discord_and_slack() -> None:
    longest = button_id("discussion", "x" * 64, 9999)
    assert len(longest) <= 100
    with pytest.raises(ValueError, match="cannot make a button id"):
        button_id("discussion", "has space", 0)


def test_the_vote_chart_is_a_deterministic_png() -> None:
    bars = [
        VoteBar(
            id="P1",
            title="Pilot a four-day week for one quarter",
            author=None,
            score=7,
            share=0.7,
            is_winner=True,
        ),
        VoteBar(id="P2", title="Keep five days", author=None, score=3, share=0.3, is_winner=False),
    ]
    png = vote_chart_png(bars, rule="rated")
    assert png is not None
    assert png.startswith(PNG)
    assert len(png) > 2000
    assert vote_chart_png(bars, rule="rated") == png
    assert vote_chart_png([], rule="rated") is None


def _events(session_id: str, team: list[str]) -> list[Progress]:
    events = [
        Progress(
            kind="step_started",
            session_id=session_id,
            step="round-1",
            phase="discussion",
            round=1,
            pending=team,
        )
    ]
    events += [
        Progress(kind="turn_completed", session_id=session_id, step="round-1", agent=a, detail="ok")
        for a in team
    ]
    events.append(Progress(kind="session_completed", session_id=session_id, detail="P1 wins"))
    return events


async def test_the_pump_coalesces_bursts_and_always_shows_the_final_view() -> None:
    personas = load_personas(None)
    team = ["analyst", "skeptic", "creative"]
    shown: list[ProgressView] = []
    in_flight = 0

    async def show(view: ProgressView) -> None:
        nonlocal in_flight
        in_flight += 1
        assert in_flight == 1, "edits overlapped"
        await asyncio.sleep(0.01)
        shown.append(view)
        in_flight -= 1

    # a long interval: the first edit, then only the final one
    pump = ProgressPump(ProgressTracker(team, personas, rounds_planned=1), show, interval_s=3600)
    pump.start()
    events = _events("s1", team)
    pump.push(events[0])
    await asyncio.sleep(0.05)
    for event in events[1:]:
        pump.push(event)
    await pump.close()
    assert len(shown) == 2
    assert shown[-1].finished
    assert shown[-1].summary == "P1 wins"

    # no interval: edits never overlap, and the last one is the final view
    shown.clear()
    pump = ProgressPump(ProgressTracker(team, personas, rounds_planned=1), show, interval_s=0)
    pump.start()
    for event in events:
        pump.push(event)
        await asyncio.sleep(0)
    await pump.close()
    assert shown[-1].finished
    assert len(shown) <= len(events)


async def test_start_with_options_as_a_slash_command_would(chat: ChatService) -> None:
    request = SessionRequest(topic="Monolith or microservices?", rounds=1, voting="condorcet", team="compact")
    report = await finish(await chat.start(request, origin(), Recorder()))
    assert report.voting_rule == "condorcet"
    assert len(report.team) == 3
    bad = await chat.start(SessionRequest(topic="X?", team="analyst,nobody"), origin(), Recorder())
    assert isinstance(bad, Replied)
    assert "nobody" in bad.text
