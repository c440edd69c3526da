"""`roundtable bus ...`: operate the collaboration bus. Parses, calls `BusOps` (`bot.busops`), renders."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from bot import BadRequest, InvalidArgument, Settings
from bot.busops import BusOps, DeadLetterRow, FoundEntry, StreamEntry, StreamStats, open_bus_ops

bus_app = typer.Typer(
    name="bus",
    help="Operate the collaboration bus: dead letters, finding and replaying messages, statistics.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
dlq_app = typer.Typer(
    name="dlq", help="Dead letters: list, show and replay them.", no_args_is_help=True, rich_markup_mode=None
)
bus_app.add_typer(dlq_app, name="dlq")

#: Piped output is read by grep and scripts: tables keep one line per row instead of wrapping at 80.
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 240)
T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON document")]
#: Widest a cell of free text is shown in a table.
_CELL = 60
#: What the user typed for each parameter of `BusOps` that an `InvalidArgument` can name.
_FLAGS = {"limit": "--limit", "start": "--from", "since": "--since", "message_id": "MESSAGE_ID"}


def _run(work: Callable[[BusOps], Awaitable[T]]) -> T:
    """Run one job on the configured bus; an invalid argument is reported by its flag."""

    async def main() -> T:
        async with open_bus_ops(Settings()) as ops:
            return await work(ops)

    try:
        return asyncio.run(main())
    except InvalidArgument as exc:
        raise BadRequest(exc.worded(_FLAGS)) from None


def _print_json(doc: Any) -> None:
    if isinstance(doc, BaseModel):
        doc = doc.model_dump(mode="json")
    elif isinstance(doc, list):
        doc = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in doc]
    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _cut(text: str, width: int = _CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


# --- dead letters ---------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="how many of the newest to show", min=1)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List the newest dead letters, oldest first."""
    page = _run(lambda ops: ops.dead_letters.newest(limit=limit))
    if as_json:
        _print_json(page)
        return
    if not page.letters:
        out.print("no dead letters", markup=False, highlight=False)
        return
    table = Table("id", "at", "agent", "reason", "deliveries", "message id", "detail", "replayed")
    for row in page.letters:
        table.add_row(
            row.id,
            _when(row.at),
            row.agent,
            row.reason,
            str(row.deliveries),
            row.message_id or "-",
            _cut(row.detail, 40),
            row.replayed.entry_id if row.replayed else "",
        )
    out.print(table)
    shown = f"{len(page.letters)} of {page.total} dead letters"
    if page.unreadable:
        shown += f"; {len(page.unreadable)} unreadable entries skipped ({', '.join(page.unreadable[:3])})"
    out.print(f"{shown}; `roundtable bus dlq show ID` shows one", markup=False, highlight=False)


@dlq_app.command("show")
def dlq_show(
    letter: Annotated[str, typer.Argument(help="the dead letter's id (from `dlq list`), or its message id")],
    as_json: JsonFlag = False,
) -> None:
    """Show one dead letter in full, with its original message."""
    view = _run(lambda ops: ops.dead_letters.show(letter))
    if as_json:
        _print_json(view)
        return
    _print_letter(view)
    if view.message is not None:
        out.print("message:", markup=False, highlight=False)
        out.print_json(json.dumps(view.message, ensure_ascii=False))
    else:
        out.print(f"message: unreadable ({view.unreadable})", markup=False, highlight=False)
        out.print_json(json.dumps(view.original, ensure_ascii=False))


def _print_letter(row: DeadLetterRow) -> None:
    lines = [
        ("dead letter", row.id),
        ("at", row.at.isoformat()),
        ("reason", f"{row.reason}: {row.detail}"),
        ("deliveries", str(row.deliveries)),
        ("agent", f"{row.agent} (group {row.group})"),
        ("from", f"{row.stream} entry {row.entry_id}"),
        ("message id", row.message_id or "-"),
        ("replayed", f"{row.replayed.at.isoformat()} as {row.replayed.entry_id}" if row.replayed else "no"),
    ]
    for name, value in lines:
        out.print(f"{name + ':':<12} {value}", markup=False, highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    letter: Annotated[str | None, typer.Argument(help="the dead letter's id, or its message id")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="replay every dead letter not replayed yet")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send dead letters' messages again, to the inbox they came from, with a fresh delivery count.

    The dead letter is kept and marked replayed, so `--all` never sends one twice. Letters that are
    malformed, whose ttl has passed, or that were replayed already are skipped with the reason.
    """
    if (letter is None) == (not replay_all):
        raise BadRequest(
            "give a dead letter id or --all, not both" if letter else "name a dead letter id, or --all"
        )
    if letter is not None:
        ref = letter
        outcomes = [_run(lambda ops: ops.dead_letters.replay(ref))]
    else:
        outcomes = _run(lambda ops: ops.dead_letters.replay_all())
    if as_json:
        _print_json(outcomes)
    else:
        for outcome in outcomes:
            if outcome.status == "replayed":
                text = f"replayed {outcome.id} (message {outcome.message_id})"
                text += f" as {outcome.stream} {outcome.entry_id}"
            else:
                text = f"skipped {outcome.id} (message {outcome.message_id or '-'}): {outcome.reason}"
            out.print(text, markup=False, highlight=False)
        replayed = sum(o.status == "replayed" for o in outcomes)
        out.print(f"{replayed} replayed, {len(outcomes) - replayed} skipped", markup=False, highlight=False)
    if letter is not None and outcomes[0].status != "replayed":
        raise typer.Exit(1)


# --- finding and replaying ------------------------------------------------------------------------


@bus_app.command("find")
def find(
    message_id: Annotated[str, typer.Argument(help="the message id")],
    as_json: JsonFlag = False,
) -> None:
    """Find a message by id across the workspace's streams: its entries, dead letters and records.

    Exits 1 when nothing has that id.
    """
    found = _run(lambda ops: ops.find(message_id))
    if as_json:
        _print_json(found)
    elif not found:
        out.print(f"no entry has message id {message_id!r}", markup=False, highlight=False)
    else:
        for hit in found:
            _print_found(hit)
    if not found:
        raise typer.Exit(1)


def _print_found(hit: FoundEntry) -> None:
    out.print(
        f"{hit.kind} in {hit.stream} entry {hit.entry_id} ({_when(hit.at)})", markup=False, highlight=False
    )
    for state in hit.groups:
        parts = [f"by {state.consumer}"] if state.consumer else []  # NATS knows neither of these
        parts += [f"delivered {state.deliveries}x"] if state.deliveries else []
        detail = " " + ", ".join(parts) if state.state == "pending" and parts else ""
        out.print(f"  group {state.group}: {state.state}{detail}", markup=False, highlight=False)
    for name, value in hit.fields.items():
        out.print(f"  {name}: {_cut(value, 100)}", markup=False, highlight=False)


@bus_app.command("replay")
def replay(
    stream: Annotated[
        str,
        typer.Argument(
            help="a stream of the workspace: inbox:AGENT:pN, dlq, audit, events... or its full key"
        ),
    ],
    start: Annotated[str | None, typer.Option("--from", help="the first entry id to show")] = None,
    since: Annotated[
        str | None, typer.Option(help="the first time to show: ISO 8601, or an age such as 10m, 2h, 1d")
    ] = None,
    limit: Annotated[int, typer.Option(help="most entries to show", min=1)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Read a stream's entries back for audit, from an entry id or a time (its start by default).

    Read-only: nothing is consumed or acknowledged.
    """
    entries = _run(lambda ops: ops.replay(stream, start=start, since=since, limit=limit))
    if as_json:
        _print_json(entries)
        return
    table = Table("entry id", "at", "type", "from → to", "message id", "content")
    for entry in entries:
        table.add_row(*_entry_cells(entry))
    out.print(table)
    more = "; --limit shows more" if len(entries) >= limit else ""
    out.print(f"{len(entries)} entries{more}", markup=False, highlight=False)


def _entry_cells(entry: StreamEntry) -> tuple[str, ...]:
    message = entry.message
    if message is None:
        body = json.dumps(entry.fields, ensure_ascii=False)
        return entry.entry_id, _when(entry.at), "-", "-", entry.fields.get("message_id", "-"), _cut(body)
    return (
        entry.entry_id,
        _when(entry.at),
        str(message["message_type"]),
        f"{message['from_agent']} → {message['to_agent']}",
        str(message["message_id"]),
        _cut(json.dumps(message["content"], ensure_ascii=False)),
    )


# --- statistics -----------------------------------------------------------------------------------


@bus_app.command("stats")
def stats(
    as_json: JsonFlag = False,
    show_all: Annotated[bool, typer.Option("--all", help="include empty streams")] = False,
) -> None:
    """Per stream: its length, and each consumer group's consumers, pending entries and lag."""

    async def work(ops: BusOps) -> tuple[str, list[StreamStats]]:
        return ops.description, await ops.stats(include_empty=show_all)

    description, rows = _run(work)
    if as_json:
        _print_json(rows)
        return
    table = Table("stream", "length", "group", "consumers", "pending", "lag", title=description)
    for row in rows:
        name = row.stream.split("}:", 1)[-1]
        if not row.groups:
            table.add_row(name, str(row.length), "-", "-", "-", "-")
        for group in row.groups:
            table.add_row(
                name,
                str(row.length),
                group.name,
                str(len(group.consumers)),
                str(group.pending),
                "?" if group.lag is None else str(group.lag),
            )
    if not rows:
        out.print(f"{description}: no streams with entries; --all shows empty ones too", markup=False)
        return
    out.print(table)
