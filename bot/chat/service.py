"""The chat service: what Discord and Slack call, with no platform type in sight.

A message goes through `handle`: the command grammar or a dilemma trigger makes a `SessionRequest`,
and admission checks it (allowlist, channel cap, configuration, rate limit, in that order, so that a
refused or invalid request never uses up one of the user's sessions). An admitted session runs in a
task that drives the adapter's `SessionPresenter`; every outcome the user should see is either a
`Replied` line or a presenter call, never silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.chat.access import AccessPolicy
from bot.chat.buttons import Action
from bot.chat.origin import ChatOrigin, Platform
from bot.chat.presenter import ChatResult, SessionPresenter
from bot.chat.pump import ProgressPump
from bot.grammar import Invalid, Usage, parse_command
from bot.ratelimit import refusal_message
from bot.request import SessionRequest
from bot.runner import SessionRunner
from bot.runtime import Runtime
from bot.triggers import should_trigger
from bot.views import (
    Page,
    ProgressTracker,
    StatisticsView,
    build_result_view,
    discussion_pages,
    proposal_pages,
    statistics_view,
)
from bot.views.chart import vote_chart_png
from bus import RateLimiter, rate_limiter_for
from engine.config import SessionConfig
from engine.errors import BadRequest, RoundTableError
from engine.history import SessionLog
from engine.report import SessionReport

log = logging.getLogger("roundtable.chat")

PresenterFor = Callable[[ChatOrigin, str], Awaitable[SessionPresenter | None]]


@dataclass(frozen=True)
class Ignored:
    """The message is not for us."""

    reason: str


@dataclass(frozen=True)
class Replied:
    """Post this one line (usage, an invalid flag, a refusal, the rate limit)."""

    text: str


@dataclass(frozen=True)
class Started:
    """A session is running; `task` ends with its report, or None when it failed."""

    session_id: str
    task: asyncio.Task[SessionReport | None] = field(compare=False)


Outcome = Ignored | Replied | Started


def user_message(exc: BaseException) -> str:
    """A short, one-line text about an error, fit to show a chat user."""
    if isinstance(exc, RoundTableError):
        text = " ".join(str(exc).split()) or type(exc).__name__
    elif isinstance(exc, TimeoutError):
        text = "it took too long; please try again"
    else:
        text = f"something went wrong ({type(exc).__name__}); the team has the details in the logs"
    return text if len(text) <= 300 else text[:299] + "…"


class ChatService:
    """Admits chat requests, runs their sessions and serves the buttons of finished ones."""

    def __init__(self, runtime: Runtime, limiter: RateLimiter) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.prefix = runtime.settings.command_prefix
        self.runner = SessionRunner(runtime)
        self._limiter = limiter
        self._access = AccessPolicy(self.settings.enabled_users, self.settings.admin_roles)
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[SessionReport | None]] = set()

    @classmethod
    async def open(cls, runtime: Runtime) -> ChatService:
        """A service on `runtime`; its rate limit lives in the bus's Redis when there is one."""
        bus = await runtime.connect_bus()
        s = runtime.settings
        limiter = rate_limiter_for(
            bus, limit=s.sessions_per_user, window_s=s.rate_window_s, workspace=s.workspace
        )
        return cls(runtime, limiter)

    # --- messages and commands ---

    async def handle(
        self, text: str, origin: ChatOrigin, presenter: SessionPresenter, *, mentioned: bool = False
    ) -> Outcome:
        """Answer a chat message (the bot's mention already removed from `text`)."""
        command = parse_command(text, prefix=self.prefix, personas=self.runtime.personas)
        if isinstance(command, Usage):
            return Replied(command.text)
        if isinstance(command, Invalid):
            return Replied(command.message)
        if command is not None:
            return await self.start(command.request, origin, presenter)
        if not (mentioned or origin.channel_id in self.settings.trigger_channels):
            return Ignored("not a command")
        if self.settings.auto_trigger and should_trigger(text) is not None:
            return await self.start(SessionRequest(topic=text.strip()), origin, presenter)
        if mentioned:
            return Replied(
                f"ask me a dilemma (pros and cons, A or B?, X vs Y) or use `{self.prefix} <topic>`; "
                f"`{self.prefix} --help` shows the options"
            )
        return Ignored("no dilemma in the message")

    async def start(
        self, request: SessionRequest, origin: ChatOrigin, presenter: SessionPresenter
    ) -> Replied | Started:
        """Admit a request and start its session, or say in one line why not."""
        refusal = self._access.refusal(origin)
        if refusal is not None:
            return Replied(refusal)
        try:
            session_id, config = self.runner.prepare(request)
        except BadRequest as exc:
            return Replied(user_message(exc))
        channel = origin.channel_key
        if self._running[channel] >= self.settings.sessions_per_channel:
            return Replied(
                "a session is already running in this channel; wait for its result, or ask in another channel"
            )
        self._running[channel] += 1  # held before the next await, so two requests cannot both pass
        try:
            if not self._access.is_admin(origin):
                decision = await self._limiter.check_and_record(origin.user_key)
                refused = refusal_message(decision)
                if refused is not None:
                    self._release(channel)
                    return Replied(refused)
        except RoundTableError as exc:
            self._release(channel)
            return Replied(user_message(exc))
        return await self._launch(session_id, config, origin, presenter, resume=False)

    async def resume_interrupted(self, platform: Platform, presenter_for: PresenterFor) -> list[Started]:
        """Resume the sessions of `platform` that a crash left running, posting where each came from."""
        started: list[Started] = []
        for record in await self.runtime.store.running_sessions():
            origin = ChatOrigin.from_metadata(record.metadata)
            if origin is None or origin.platform != platform:
                continue
            config = SessionLog(await self.runtime.store.load_events(record.id)).config
            presenter = await presenter_for(origin, record.id)
            if presenter is None or config is None:
                continue
            self._running[origin.channel_key] += 1
            started.append(await self._launch(record.id, config, origin, presenter, resume=True))
        return started

    # --- what the buttons show ---

    async def result(self, session_id: str) -> ChatResult:
        """A stored session's result, ready to render. Raises `SessionNotFound`."""
        return await self._chat_result(await self.runner.show(session_id))

    async def pages(self, session_id: str, action: Action, *, page_chars: int) -> list[Page]:
        """The full discussion or all proposals, in pages of at most `page_chars` characters."""
        report = await self.runner.show(session_id)
        if action == "discussion":
            return discussion_pages(report, self.runtime.personas, page_chars=page_chars)
        if action == "proposals":
            return proposal_pages(report, self.runtime.personas, page_chars=page_chars)
        raise BadRequest(f"no pages for '{action}'; choose discussion or proposals")

    async def statistics(self, session_id: str) -> StatisticsView:
        return statistics_view(await self.runner.show(session_id), self.runtime.personas)

    async def close(self) -> None:
        """Stop running sessions; they stay `running` in storage and resume at the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close()

    # --- running ---

    async def _launch(
        self,
        session_id: str,
        config: SessionConfig,
        origin: ChatOrigin,
        presenter: SessionPresenter,
        *,
        resume: bool,
    ) -> Started:
        tracker = ProgressTracker(config.team, self.runtime.personas, rounds_planned=config.rounds)
        await _safely("started", presenter.started(session_id, tracker.view))
        task = asyncio.create_task(
            self._run(session_id, config, origin, presenter, tracker, resume=resume),
            name=f"roundtable-session-{session_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Started(session_id, task)

    async def _run(
        self,
        session_id: str,
        config: SessionConfig,
        origin: ChatOrigin,
        presenter: SessionPresenter,
        tracker: ProgressTracker,
        *,
        resume: bool,
    ) -> SessionReport | None:
        pump = ProgressPump(tracker, presenter.progress, interval_s=self.settings.progress_interval_s)
        pump.start()
        try:
            if resume:
                report = await self.runner.resume(session_id, progress=pump.push)
            else:
                report = await self.runner.run(
                    session_id, config, progress=pump.push, metadata=origin.metadata()
                )
        except asyncio.CancelledError:
            await asyncio.shield(pump.close())
            raise
        except Exception as exc:
            log.warning("roundtable.chat_session_failed session=%s", session_id, exc_info=True)
            await pump.close()
            await _safely("failed", presenter.failed(user_message(exc)))
            return None
        finally:
            self._release(origin.channel_key)
        await pump.close()
        try:
            result = await self._chat_result(report)
        except Exception as exc:  # a chart or view bug must still reach the channel as a line
            log.warning("roundtable.chat_render_failed session=%s", session_id, exc_info=True)
            await _safely("failed", presenter.failed(user_message(exc)))
            return report
        try:
            await presenter.finished(result)
        except Exception as exc:
            log.warning("roundtable.presenter_failed call=finished", exc_info=True)
            await _safely(
                "failed",
                presenter.failed(
                    f"the session finished, but its result could not be posted ({user_message(exc)}); "
                    f"`roundtable show {session_id}` has it"
                ),
            )
        return report

    async def _chat_result(self, report: SessionReport) -> ChatResult:
        view = build_result_view(report, self.runtime.personas)
        chart = await asyncio.to_thread(vote_chart_png, view.votes, rule=view.voting_rule)
        return ChatResult(session_id=view.session_id, view=view, chart_png=chart, report=report)

    def _release(self, channel: str) -> None:
        self._running[channel] -= 1
        if self._running[channel] <= 0:
            del self._running[channel]


async def _safely(what: Literal["started", "finished", "failed"], call: Awaitable[None]) -> None:
    """Await a presenter call; its failure is logged, since the session itself went fine."""
    try:
        await call
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("roundtable.presenter_failed call=%s", what, exc_info=True)


__all__ = ["ChatService", "Ignored", "Outcome", "Replied", "Started", "user_message"]
