"""View-models to Discord message payloads: pure functions, no client, no I/O.

Every function returns embeds as the JSON Discord takes (`discord.Embed.from_dict` reads them back)
plus plain button specs, so the whole layout can be tested, and kept as golden files, without a
connection. Long text is never cut: `pack_embeds` splits it at paragraph, line, sentence or word
boundaries over fields, embeds and, past 6000 characters, further messages, within every limit in
`adapters.discord.limits`. Only headings are shortened, and only when their full text is shown too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from adapters.discord import limits
from bot.chat import ACTION_LABELS, ACTIONS, Action, ButtonRef, button_id
from bot.views import AgentProgress, AgentStats, Page, ProgressView, ResultView, StatisticsView, split_text

CHART_FILENAME: Final = "votes.png"
#: Characters per page of the discussion and proposal views; a page is one embed description.
PAGE_CHARS: Final = 4000
#: How much of an agent's latest words a progress line shows (the full text is behind a button).
DETAIL_CHARS: Final = 160
CONTINUED: Final = " (continued)"

COLOR_RUNNING: Final = 0x5865F2
COLOR_DECIDED: Final = 0x57F287
COLOR_UNDECIDED: Final = 0xFEE75C
COLOR_FAILED: Final = 0xED4245
COLOR_INFO: Final = 0x99AAB5

ButtonStyle = Literal["primary", "secondary"]

Embed = dict[str, Any]


class ButtonSpec(BaseModel):
    """A persistent button: its id carries the session, the action and the page."""

    model_config = ConfigDict(frozen=True)

    ref: ButtonRef
    label: str
    style: ButtonStyle = "secondary"

    @property
    def custom_id(self) -> str:
        return button_id(self.ref.action, self.ref.session_id, self.ref.page)


class MessageSpec(BaseModel):
    """One Discord message: text, embeds, buttons (one row), and whether the vote chart is attached."""

    model_config = ConfigDict(frozen=True)

    content: str | None = None
    embeds: list[Embed] = []
    buttons: list[ButtonSpec] = []
    #: Attach the vote chart as `CHART_FILENAME`; the first embed shows it as its image.
    chart: bool = False


@dataclass(frozen=True)
class Section:
    """A titled block of text that becomes one or more embed fields."""

    name: str
    body: str
    inline: bool = False


# -- packing --------------------------------------------------------------------------------------


def section_fields(section: Section) -> list[Embed]:
    """A section as fields of at most 1024 characters each; the later ones are named "… (continued)"."""
    chunks = split_text(section.body, limits.FIELD_VALUE)
    name = limits.fit_heading(section.name, limits.FIELD_NAME - len(CONTINUED))
    return [
        {
            "name": name if i == 0 else name + CONTINUED,
            "value": chunk,
            "inline": section.inline and len(chunks) == 1,
        }
        for i, chunk in enumerate(chunks)
    ]


def pack_embeds(
    *,
    title: str,
    description: str = "",
    sections: Sequence[Section] = (),
    footer: str = "",
    color: int = COLOR_INFO,
    image_url: str | None = None,
) -> list[list[Embed]]:
    """Lay a title, a description and sections out over as many embeds and messages as they need.

    The first embed carries the title, the description (its overflow continues as fields), the footer
    and the image. Fields fill it up to 25 or the 6000-character budget of the message; further
    fields go to "(continued)" embeds in the same message while it has room (10 embeds, 6000
    characters), then to further messages.

    Returns:
        One list of embeds per message, in order; never empty.
    """
    title = limits.fit_heading(title, limits.TITLE)
    footer = limits.fit_heading(footer, limits.FOOTER)
    first: Embed = {"title": title, "color": color}
    fields: list[Embed] = []
    room = min(limits.DESCRIPTION, limits.EMBED_TOTAL - len(title) - len(footer))
    chunks = split_text(description, room)
    if chunks:
        first["description"] = chunks[0]
        rest = "\n\n".join(chunks[1:])
        if rest:
            fields.extend(section_fields(Section(limits.fit_heading(title, 200) + CONTINUED, rest)))
    if footer:
        first["footer"] = {"text": footer}
    if image_url is not None:
        first["image"] = {"url": image_url}
    for section in sections:
        fields.extend(section_fields(section))

    continued_title = limits.fit_heading(title, limits.TITLE - len(CONTINUED)) + CONTINUED
    messages: list[list[Embed]] = []
    embeds = [first]
    current = first
    used = limits.embed_chars(first)
    for field in fields:
        cost = len(field["name"]) + len(field["value"])
        current_fields = current.setdefault("fields", [])
        if len(current_fields) < limits.FIELDS and used + cost <= limits.EMBED_TOTAL:
            current_fields.append(field)
            used += cost
            continue
        current = {"title": continued_title, "color": color, "fields": [field]}
        cost += len(continued_title)
        if len(embeds) < limits.EMBEDS_PER_MESSAGE and used + cost <= limits.EMBED_TOTAL:
            embeds.append(current)
            used += cost
        else:
            messages.append(embeds)
            embeds, used = [current], cost
    messages.append(embeds)
    return messages


# -- progress -------------------------------------------------------------------------------------


def progress_embed(view: ProgressView) -> Embed:
    """The live status message: the step, one line per agent, the step notes, the elapsed time."""
    icon = "✅" if view.finished else "⏳"
    title = limits.fit_heading(f"{icon} RoundTable · {view.title}", limits.TITLE)
    fields: list[Embed] = []
    if view.notes:
        fields.append({"name": "Steps", "value": _fit_lines(view.notes, limits.FIELD_VALUE, newest=True)})
    if view.summary:
        fields.append({"name": "Result", "value": limits.fit_heading(view.summary, limits.FIELD_VALUE)})
    footer = f"{view.elapsed_s:.0f}s elapsed"
    if view.session_id:
        footer += f" · session {view.session_id}"
    used = len(title) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    lines = [agent_line(agent) for agent in view.agents] or ["Gathering the team…"]
    embed: Embed = {
        "title": title,
        "description": _fit_lines(lines, min(limits.DESCRIPTION, limits.EMBED_TOTAL - used)),
        "color": COLOR_DECIDED if view.finished else COLOR_RUNNING,
        "footer": {"text": footer},
    }
    if fields:
        embed["fields"] = fields
    return embed


def agent_line(progress: AgentProgress) -> str:
    """ "🔍 **Analyst** · typing…", with the gist of what the agent said once it has spoken."""
    line = f"{progress.agent.emoji} **{progress.agent.name}** · {progress.status_text}"
    if progress.detail:
        line += f" — {limits.fit_heading(progress.detail, DETAIL_CHARS)}"
    return line


def _fit_lines(lines: Sequence[str], limit: int, *, newest: bool = False) -> str:
    """Whole lines that fit in `limit` (the first ones, or the newest), with a count of the rest."""
    ordered = list(reversed(lines)) if newest else list(lines)
    kept: list[str] = []
    size = 0
    for i, line in enumerate(ordered):
        line = limits.fit_heading(line, limit - 40)
        more = len(ordered) - i - 1
        reserve = len(f"\n… and {more} more") if more else 0
        if size + len(line) + 1 + reserve > limit:
            kept.append(f"… and {len(ordered) - i} more")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept) if newest else kept)


# -- result ---------------------------------------------------------------------------------------


def result_messages(view: ResultView, *, chart: bool) -> list[MessageSpec]:
    """The result: the decision, its proposal, the votes and the session facts, then the three buttons.

    The first message carries the buttons and, when `chart`, the vote chart; text that does not fit
    in it continues in the messages after it.
    """
    if view.decided and view.winner_title:
        title = f"🏆 {view.winner_title}"
        color = COLOR_UNDECIDED if view.degraded else COLOR_DECIDED
    else:
        title = "🤝 No decision"
        color = COLOR_UNDECIDED
    sections: list[Section] = []
    if len(title) > limits.TITLE and view.winner_title:
        sections.append(Section("Winning proposal", view.winner_title))
    if view.decided:
        by = f" by {view.author.label}" if view.author else ""
        sections.append(Section(f"Proposal{by}", view.description or "(no description)"))
        sections.append(Section("Benefits", "\n".join(f"• {b}" for b in view.benefits)))
        sections.append(Section("Steps", "\n".join(f"{i}. {s}" for i, s in enumerate(view.steps, 1))))
    else:
        sections.append(Section("Why", view.no_decision_reason or "No decision was reached."))
    sections.append(Section(f"Votes · {view.voting_rule}", vote_lines(view)))
    if view.consensus_percent is not None:
        sections.append(Section("Consensus", f"{view.consensus_percent}%", inline=True))
    sections.append(Section("Rounds", view.rounds_text, inline=True))
    if view.degraded is not None:
        entries = "\n".join(f"• {entry.text}" for entry in view.degraded.entries)
        sections.append(Section("⚠️ Degraded", f"{view.degraded.summary}\n{entries}".strip()))
    messages = pack_embeds(
        title=title,
        description=f"**Question:** {view.topic}",
        sections=sections,
        footer=f"{view.usage_line} · session {view.session_id}",
        color=color,
        image_url=f"attachment://{CHART_FILENAME}" if chart else None,
    )
    buttons = [
        ButtonSpec(ref=ButtonRef(action=action, session_id=view.session_id), label=ACTION_LABELS[action])
        for action in ACTIONS
    ]
    return [
        MessageSpec(embeds=embeds, buttons=buttons if i == 0 else [], chart=chart and i == 0)
        for i, embeds in enumerate(messages)
    ]


def vote_lines(view: ResultView) -> str:
    """One line per proposal in ranking order: id, title, author, score and share of the votes."""
    if not view.votes:
        return "No proposal was voted on."
    lines = []
    for bar in view.votes:
        mark = "🏆" if bar.is_winner else "▫️"
        author = f" · {bar.author.label}" if bar.author else ""
        lines.append(f"{mark} **{bar.id}** {bar.title}{author} — {_number(bar.score)} ({bar.share:.0%})")
    return "\n".join(lines)


def failure_message(message: str, session_id: str | None) -> MessageSpec:
    """The one line that says what went wrong with a session."""
    who = f"RoundTable session `{session_id}`" if session_id else "RoundTable"
    return MessageSpec(content=reply_chunks(f"⚠️ {who}: {message}")[0])


# -- buttons: pages and statistics ------------------------------------------------------------------

_PAGE_ICONS: Final[dict[Action, str]] = {"discussion": "💬", "proposals": "📋", "stats": "📊"}


def page_message(page: Page, *, action: Action, session_id: str) -> MessageSpec:
    """One page of the discussion or the proposals, with buttons to the pages before and after it.

    A page holds at most `PAGE_CHARS` characters (the service cuts them so), which fits an embed
    description.
    """
    embed: Embed = {
        "title": limits.fit_heading(f"{_PAGE_ICONS[action]} {page.label}", limits.TITLE),
        "description": page.body,
        "color": COLOR_INFO,
        "footer": {"text": f"session {session_id}"},
    }
    return MessageSpec(embeds=[embed], buttons=nav_buttons(action, session_id, page.index, page.total))


def statistics_messages(stats: StatisticsView) -> list[MessageSpec]:
    """The statistics, one message per page (usually one), each with its page buttons."""
    summary = f"{stats.total_turns} turns · {stats.total_words} words\n{stats.usage_line}"
    pages = pack_embeds(
        title=f"{_PAGE_ICONS['stats']} Statistics",
        description=summary,
        sections=[Section(agent.agent.label, agent_stats_text(agent)) for agent in stats.agents],
        footer=f"session {stats.session_id}",
        color=COLOR_INFO,
    )
    return [
        MessageSpec(embeds=embeds, buttons=nav_buttons("stats", stats.session_id, i, len(pages)))
        for i, embeds in enumerate(pages)
    ]


def agent_stats_text(stats: AgentStats) -> str:
    """An agent's turns, words, latency, usage and vote, one fact per line."""
    turns = f"{stats.turns} turn{'s' if stats.turns != 1 else ''}"
    if stats.fallbacks:
        turns += f" ({stats.fallbacks} fell back)"
    lines = [f"{turns} · {stats.words} word{'s' if stats.words != 1 else ''}"]
    if stats.mean_latency_ms is not None:
        lines.append(f"mean latency {stats.mean_latency_ms:.0f} ms")
    if stats.usage is not None:
        u = stats.usage
        lines.append(
            f"{u.llm_calls} LLM calls · {u.prompt_tokens}+{u.completion_tokens} tokens · ${u.cost_usd:.4f}"
        )
    lines.append(f"vote: {stats.vote.text}")
    return "\n".join(lines)


def nav_buttons(action: Action, session_id: str, index: int, total: int) -> list[ButtonSpec]:
    """ "◀ Previous" and "Next ▶" where there is a page to go to; their ids carry the target page."""
    buttons = []
    if index > 0:
        buttons.append(
            ButtonSpec(
                ref=ButtonRef(action=action, session_id=session_id, page=index - 1), label="◀ Previous"
            )
        )
    if index < total - 1:
        buttons.append(
            ButtonSpec(
                ref=ButtonRef(action=action, session_id=session_id, page=index + 1),
                label="Next ▶",
                style="primary",
            )
        )
    return buttons


# -- replies --------------------------------------------------------------------------------------


def reply_chunks(text: str) -> list[str]:
    """A reply as message contents of at most 2000 characters; a multi-line text keeps its layout
    in a code block (the usage text aligns its options with spaces)."""
    text = text.strip() or "(empty reply)"
    if "\n" in text and "```" not in text:
        fence = len("```\n\n```")
        return [f"```\n{chunk}\n```" for chunk in split_text(text, limits.CONTENT - fence)]
    return split_text(text, limits.CONTENT)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
