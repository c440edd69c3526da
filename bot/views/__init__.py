"""Platform-neutral view-models: what Discord, Slack and the terminal render, built without I/O.

    ProgressTracker(team, personas, rounds_planned=).update(event) -> ProgressView
    build_result_view(report, personas) -> ResultView
    discussion_pages(report, personas, page_chars=) -> [Page]
    proposal_pages(report, personas, page_chars=) -> [Page]
    statistics_view(report, personas) -> StatisticsView
    split_text(text, limit) -> [str]          cut at paragraph, line, sentence, then word boundaries

`report` is the session's `engine.report.SessionReport` (the `ask --json` document of docs/cli.md).
Numbers are rounded here, for display, and nowhere before: the report holds them exact.
"""

from __future__ import annotations

from bot.views.agents import AgentRef, agent_ref
from bot.views.pages import Page, discussion_pages, proposal_pages
from bot.views.progress import AgentProgress, AgentStatus, ProgressTracker, ProgressView, step_title
from bot.views.result import DegradedEntry, DegradedNotice, ResultView, VoteBar, build_result_view
from bot.views.statistics import AgentStats, AgentUsage, StatisticsView, VoteSummary, statistics_view
from bot.views.text import pack_blocks, split_text

__all__ = [
    "AgentProgress",
    "AgentRef",
    "AgentStats",
    "AgentStatus",
    "AgentUsage",
    "DegradedEntry",
    "DegradedNotice",
    "Page",
    "ProgressTracker",
    "ProgressView",
    "ResultView",
    "StatisticsView",
    "VoteBar",
    "VoteSummary",
    "agent_ref",
    "build_result_view",
    "discussion_pages",
    "pack_blocks",
    "proposal_pages",
    "split_text",
    "statistics_view",
    "step_title",
]
