"""Terminal rendering: live progress while a session runs, then the decision."""

from __future__ import annotations

import time
import unicodedata
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot import Progress, SessionReport

BAR_WIDTH = 30


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` safe for a terminal: control characters and bidi overrides as `repr`-style escapes.

    A topic, or a model's reply, may carry ANSI escape sequences or other controls that would move the
    cursor, recolour or retitle the terminal, or hide text. Stored text stays as given; every terminal
    view shows it through this. With `newlines`, line breaks are kept (multi-line bodies).
    """
    return "".join(_escape(char, newlines) for char in text)


def _escape(char: str, newlines: bool) -> str:
    if newlines and char == "\n":
        return char
    if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
        return repr(char)[1:-1]
    return char


#: Format characters that reorder or hide the text around them (Trojan Source, CVE-2021-42574).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class LiveProgress:
    """A Rich live view of a running session: phase, who has spoken, who is still typing."""

    def __init__(self, console: Console, team: list[str], emojis: dict[str, str]) -> None:
        self._console = console
        self._team = team
        self._emojis = emojis
        self._step = "starting"
        self._status: dict[str, tuple[str, str]] = {}
        self._started = time.monotonic()
        self._notes: list[str] = []
        self._live = Live(self._render(), console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render())
        self._live.__exit__(None, None, None)

    def __call__(self, event: Progress) -> None:
        if event.kind == "step_started":
            self._step = _step_title(event.step or "", event.round)
            self._status = {a: ("typing…", "") for a in event.pending}
        elif event.kind == "turn_completed" and event.agent:
            mark = "fallback" if event.fallback else "done"
            self._status[event.agent] = (mark, event.detail or "")
            detail = printable(event.detail or "")
            line = f"{self._emojis.get(event.agent, '')} {event.agent} ({self._step}): {detail}"
            self._live.console.print(Text(line[:200], style="red" if event.fallback else "dim"))
        elif event.kind == "step_completed" and event.detail:
            self._notes.append(f"{_step_title(event.step or '', event.round)}: {event.detail}")
        self._live.update(self._render())

    def _render(self) -> Panel:
        table = Table.grid(padding=(0, 1))
        for agent in self._team:
            state, gist = self._status.get(agent, ("", ""))
            style = {"done": "green", "fallback": "red", "typing…": "yellow"}.get(state, "dim")
            table.add_row(
                f"{self._emojis.get(agent, '')} {agent}",
                Text(state, style=style),
                Text(printable(gist)[:70], style="dim"),
            )
        elapsed = time.monotonic() - self._started
        notes = Text("\n".join(self._notes[-3:]), style="cyan")
        return Panel(Group(table, notes), title=f"{self._step} · {elapsed:.0f}s", border_style="blue")


class PlainProgress:
    """One line per event on standard error, for `--json` runs and non-terminals."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, event: Progress) -> None:
        if event.kind == "turn_completed":
            mark = "fallback" if event.fallback else "ok"
            self._console.print(
                f"{event.step} {event.agent} {mark}: {printable(event.detail or '')[:120]}",
                markup=False,
                highlight=False,
                soft_wrap=True,  # one event per line: Rich would wrap at 80 columns off a terminal
            )
        elif event.kind == "step_completed" and event.detail:
            self._console.print(
                f"{event.step}: {printable(event.detail)}", markup=False, highlight=False, soft_wrap=True
            )


def _step_title(step: str, round_no: int | None) -> str:
    if step.startswith("round-"):
        return f"discussion round {step.removeprefix('round-')}"
    return {"proposals": "proposals", "votes": "voting", "discussion": "discussion"}.get(step, step)


def vote_bars(report: SessionReport) -> Table:
    """The vote distribution as a text bar chart."""
    tally = report.tally
    scores = tally.scores if tally is not None else {}
    titles = {p.id: p.title for p in report.proposals}
    table = Table.grid(padding=(0, 1))
    top = max([abs(v) for v in scores.values()] + [1])
    for pid in tally.ranking if tally is not None else []:
        value = scores.get(pid, 0)
        bar = "█" * round(BAR_WIDTH * max(0, value) / top)
        style = "bold green" if tally is not None and pid == tally.winner else "blue"
        table.add_row(
            pid,
            Text(bar or "·", style=style),
            str(value),
            Text(printable(titles.get(pid, ""))[:50], style="dim"),
        )
    return table


def render_result(console: Console, report: SessionReport, emojis: dict[str, str]) -> None:
    if report.degraded:
        lines = "\n".join(
            f"• {d.agent or 'session'} at {d.step}: {printable(d.reason)}" for d in report.degraded
        )
        console.print(Panel(Text(lines), title="⚠ degraded session", border_style="red"))
    winner = report.winner
    if winner is None:
        title = Text(printable(report.topic)[:80])
        if report.status == "running":  # stored, but its process stopped before the result
            note = (
                f"Interrupted: this session stopped before its result. "
                f"`roundtable resume {report.session_id}` finishes it."
            )
            console.print(Panel(Text(note), title=title, border_style="yellow"))
            return
        console.print(Panel(Text("No decision: no valid ballot was cast."), title=title, border_style="red"))
        return
    consensus = report.tally.consensus if report.tally is not None else 0.0
    head = Text()
    head.append(f"{printable(winner.title)}\n", style="bold")
    head.append(f"proposed by {emojis.get(winner.author, '')} {winner.author}", style="cyan")
    head.append(f" · consensus {consensus:.0%} · rule {report.voting_rule}")
    head.append(f" · rounds {report.rounds_run}/{report.rounds_planned}")
    if report.stop_reason:
        head.append(f" ({report.stop_reason})", style="dim")
    body: list[Any] = [head, Text(""), Text(printable(winner.description, newlines=True))]
    if winner.benefits:
        body += [
            Text("\nBenefits", style="bold"),
            Text("\n".join(f"• {printable(b)}" for b in winner.benefits)),
        ]
    if winner.steps:
        body += [
            Text("\nSteps", style="bold"),
            Text("\n".join(f"{i}. {printable(s)}" for i, s in enumerate(winner.steps, 1))),
        ]
    body += [Text("\nVotes", style="bold"), vote_bars(report)]
    usage = report.usage
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens"
    footer = f"\n{usage.llm_calls} LLM calls · {tokens} · ${usage.cost_usd:.4f} · {report.duration_s:.1f}s"
    body.append(Text(f"{footer} · session {report.session_id}", style="dim"))
    console.print(Panel(Group(*body), title=Text(f"🏛 {printable(report.topic)[:80]}"), border_style="green"))
