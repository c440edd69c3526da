"""`bot` view-models as Block Kit messages: pure functions, no client, no I/O.

progress_message(view)                      the status message, posted then edited
result_messages(view)                       the decision with its three buttons (one message, or
                                            several when it exceeds 50 blocks)
page_message(page, action, session_id)      a page behind "View Full Discussion"/"View All Proposals"
statistics_pages(stats)                     the pages behind "View Statistics"
notice_message(text)                        a one-line reply, refusal or error
"""

from __future__ import annotations

from typing import Final

from adapters.slack.blocks import (
    Block,
    SlackMessage,
    actions,
    button,
    context,
    divider,
    escape,
    fallback,
    fits_header,
    header,
    sections,
    shorten,
    single_message,
    split_messages,
)
from bot.chat import ACTION_LABELS, ACTIONS, Action, button_id
from bot.views import AgentStats, Page, ProgressView, ResultView, StatisticsView, VoteBar

#: Characters of discussion or proposals per page: at most a dozen section blocks even when escaping
#: makes the text grow, so a page is always one message.
PAGE_CHARS: Final = 6000
#: Agents per statistics page; each takes one section block.
STATS_PER_PAGE: Final = 10
#: The gist of an agent's turn in the live status; the full words are behind "View Full Discussion".
GIST_CHARS: Final = 200
BAR_WIDTH: Final = 10

STATUS_ICON: Final = {"waiting": "⏳", "typing": "✍️", "spoken": "✅", "failed": "⚠️"}
PAGE_ICON: Final[dict[Action, str]] = {"discussion": "💬", "proposals": "📋", "stats": "📊"}


def progress_message(view: ProgressView) -> SlackMessage:
    """The live status of a running session."""
    title = f"{'✅' if view.finished else '🤔'} RoundTable · {view.title}"
    blocks: list[Block] = [header(title, fallback="RoundTable")]
    lines = [_agent_line(a.agent.label, a.status, a.status_text, a.detail) for a in view.agents]
    blocks += sections("\n".join(lines))
    if view.notes:
        blocks += sections("\n".join(f"• {note}" for note in view.notes))
    if view.summary:
        blocks += sections(view.summary)
    meta = [f"{view.elapsed_s:.0f}s elapsed"]
    if view.session_id:
        meta.insert(0, f"session {view.session_id}")
    blocks += context(meta)
    return single_message(f"RoundTable: {view.title}", blocks)


def _agent_line(label: str, status: str, status_text: str, detail: str | None) -> str:
    line = f"{STATUS_ICON.get(status, '•')} {label} · {status_text}"
    return f"{line} — {shorten(detail, GIST_CHARS)}" if detail else line


def result_messages(view: ResultView) -> list[SlackMessage]:
    """The decision, the votes, the degraded notice and the three buttons."""
    blocks: list[Block] = []
    if view.decided and view.winner_title:
        title = f"🏆 {view.winner_title}"
        blocks.append(header(title, fallback="🏆 RoundTable decision"))
        if not fits_header(title):  # the header shows the fixed title; the winner's is shown whole here
            blocks += sections(view.winner_title, title="*Decision*")
    else:
        blocks.append(header("🤷 No decision", fallback="No decision"))
    blocks += sections(view.topic, title="*Question*")
    if view.decided:
        byline = [f"by {view.author.label}"] if view.author else []
        if view.consensus_percent is not None:
            byline.append(f"consensus {view.consensus_percent}%")
        blocks += sections(" · ".join(byline))
        if view.description:
            blocks += sections(view.description)
        if view.benefits:
            blocks += sections("\n".join(f"• {b}" for b in view.benefits), title="*Benefits*")
        if view.steps:
            blocks += sections("\n".join(f"{i}. {s}" for i, s in enumerate(view.steps, 1)), title="*Steps*")
    elif view.no_decision_reason:
        blocks += sections(view.no_decision_reason)
    if view.votes:
        blocks.append(divider())
        blocks += sections(
            "\n".join(_vote_line(bar) for bar in view.votes), title=f"*Votes* ({view.voting_rule})"
        )
    if view.degraded is not None:
        blocks += sections(
            "\n".join(f"• {entry.text}" for entry in view.degraded.entries),
            title=f"⚠️ {escape(view.degraded.summary)}",
        )
    blocks += context(
        [view.rounds_text, f"voting: {view.voting_rule}", view.usage_line, f"session {view.session_id}"]
    )
    blocks += actions(
        [
            button(ACTION_LABELS[action], button_id(action, view.session_id), primary=i == 0)
            for i, action in enumerate(ACTIONS)
        ]
    )
    if view.decided and view.winner_title:
        text = f"RoundTable decision: {view.winner_title}"
    else:
        text = f"RoundTable reached no decision on: {view.topic}"
    return split_messages(text, blocks)


def _vote_line(bar: VoteBar) -> str:
    filled = round(bar.share * BAR_WIDTH)
    bars = "█" * filled + "░" * (BAR_WIDTH - filled)
    who = f" ({bar.author.label})" if bar.author else ""
    mark = "🏆 " if bar.is_winner else ""
    return f"{mark}{bar.id} {bars} {bar.share:.0%} · {_number(bar.score)} — {bar.title}{who}"


def page_message(page: Page, action: Action, session_id: str) -> SlackMessage:
    """One page of the discussion or the proposals, with Previous/Next buttons."""
    blocks: list[Block] = [header(f"{PAGE_ICON[action]} {page.label}", fallback=PAGE_ICON[action])]
    blocks += sections(page.body)
    blocks += context([f"session {session_id}"])
    blocks += _navigation(action, session_id, page.index, page.total)
    return single_message(f"RoundTable {page.label}", blocks)


def statistics_pages(stats: StatisticsView) -> list[SlackMessage]:
    """The statistics, `STATS_PER_PAGE` agents a page, each page with Previous/Next buttons."""
    groups = [stats.agents[i : i + STATS_PER_PAGE] for i in range(0, len(stats.agents), STATS_PER_PAGE)] or [
        []
    ]
    total = len(groups)
    pages = []
    for index, group in enumerate(groups):
        label = "Statistics" if total == 1 else f"Statistics ({index + 1}/{total})"
        blocks: list[Block] = [header(f"📊 {label}", fallback="📊 Statistics")]
        for agent in group:
            blocks += sections(_agent_stats(agent))
        if not group:
            blocks += sections("No agent took part.")
        blocks += context(
            [
                f"{stats.total_turns} turns",
                f"{stats.total_words} words",
                stats.usage_line,
                f"session {stats.session_id}",
            ]
        )
        blocks += _navigation("stats", stats.session_id, index, total)
        pages.append(single_message(f"RoundTable {label}", blocks))
    return pages


def _agent_stats(agent: AgentStats) -> str:
    turns = f"{agent.turns} turn{'s' if agent.turns != 1 else ''}"
    if agent.fallbacks:
        turns += f" ({agent.fallbacks} fell back)"
    parts = [turns, f"{agent.words} word{'s' if agent.words != 1 else ''}"]
    if agent.mean_latency_ms is not None:
        parts.append(f"{agent.mean_latency_ms:.0f} ms a turn")
    if agent.usage is not None:
        parts.append(
            f"{agent.usage.llm_calls} LLM calls, {agent.usage.tokens} tokens, ${agent.usage.cost_usd:.4f}"
        )
    return f"*{agent.agent.label}*\n{' · '.join(parts)}\nvote: {agent.vote.text}"


def _navigation(action: Action, session_id: str, index: int, total: int) -> list[Block]:
    buttons = []
    if index > 0:
        buttons.append(button("◀ Previous", button_id(action, session_id, index - 1)))
    if index + 1 < total:
        buttons.append(button("Next ▶", button_id(action, session_id, index + 1)))
    return actions(buttons)


def notice_message(text: str) -> SlackMessage:
    """A reply that is one line (or the short usage text): refusal, rate limit, error."""
    return SlackMessage(text=fallback(text), blocks=sections(text) or sections("(empty reply)"))


def failure_message(text: str) -> SlackMessage:
    """A session that could not finish, or whose result could not be shown."""
    return notice_message(f"⚠️ RoundTable: {text}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


__all__ = [
    "PAGE_CHARS",
    "failure_message",
    "notice_message",
    "page_message",
    "progress_message",
    "result_messages",
    "statistics_pages",
]
