"""The `roundtable` command line (docs/cli.md): parse, call `bot`, render."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.cli.bus import bus_app
from adapters.cli.render import LiveProgress, PlainProgress, printable, render_result
from bot import (
    BadRequest,
    RoundTableError,
    RuleMismatch,
    Runtime,
    SessionNotFound,
    SessionReport,
    SessionRequest,
    SessionRunner,
    Settings,
    parse_rounds,
    require_rule,
    tally_lines,
    tally_text,
)

app = typer.Typer(
    name="roundtable",
    help="A team of LLM persona agents deliberates a question and returns a decision.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(bus_app, name="bus")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")
#: Persona id -> emoji, filled when the runtime opens, for rendering.
_EMOJIS: dict[str, str] = {}

#: Exit status for usage errors, as click uses it.
USAGE = 2
#: The values ROUNDTABLE_LOG_LEVEL takes.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _run(settings: Settings, work: Callable[[SessionRunner], Awaitable[T]]) -> T:
    async def main() -> T:
        runtime = await Runtime.open(settings)
        _EMOJIS.update({p.id: p.emoji for p in runtime.personas.values()})
        runner = SessionRunner(runtime)
        try:
            return await work(runner)
        finally:
            await runner.close()
            await runtime.close()

    return asyncio.run(main())


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_report(report: SessionReport) -> None:
    """The report as the one JSON document of docs/cli.md."""
    # Through json.dumps, like every other document this CLI prints: the same spacing and float digits.
    _print_json(report.model_dump(mode="json"))


@app.command()
def ask(
    topic: Annotated[str, typer.Argument(help="the question to deliberate")],
    # Read as text: a bad value is then our one-line error with the range, not click's.
    rounds: Annotated[str | None, typer.Option(help="discussion rounds, 1-5")] = None,
    voting: Annotated[
        str | None, typer.Option(help="majority|rated|ranked|unanimity|approval|condorcet")
    ] = None,
    team: Annotated[str | None, typer.Option(help="default|full|compact or a,b,c")] = None,
    model: Annotated[str | None, typer.Option(help="any LiteLLM model string")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="the model API's base URL")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="the model provider's key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="always run every round")] = False,
    seed: Annotated[int | None, typer.Option(help="seed for shuffles and tie-breaks")] = None,
    external_agents: Annotated[
        bool, typer.Option("--external-agents", help="use agents served by `roundtable worker`")
    ] = False,
) -> None:
    """Run one deliberation and print the decision.

    With --external-agents the turns go to `roundtable worker` processes on the same bus; when the team
    is not served within ROUNDTABLE_EXTERNAL_WAIT_S, it exits 1 naming the missing personas (the
    arguments were fine; the workers are missing).
    """
    settings = _settings(model=model, api_base=api_base, api_key=api_key)
    request = SessionRequest(
        topic=topic,
        rounds=None if rounds is None else parse_rounds(rounds),
        voting=voting,
        team=team,
        early_stop=not no_early_stop,
        seed=seed,
    )

    async def work(runner: SessionRunner) -> SessionReport:
        session_id, config = runner.prepare(request)
        if external_agents:
            await runner.wait_for_agents(config.team)  # before a session is recorded
        else:
            runner.runtime.llm()  # fail fast, before a session is recorded, when no model is configured
        err.print(f"session {session_id}", markup=False, highlight=False)
        emojis = _EMOJIS
        if as_json or not err.is_terminal:
            return await runner.run(session_id, config, progress=PlainProgress(err), external=external_agents)
        with LiveProgress(err, config.team, emojis) as live:
            return await runner.run(session_id, config, progress=live, external=external_agents)

    _output(_run(settings, work), as_json)


def _output(report: SessionReport, as_json: bool) -> None:
    if as_json:
        _print_report(report)
        return
    render_result(out, report, _EMOJIS)


@app.command()
def show(
    session_id: Annotated[str, typer.Argument(help="a session id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a stored session: its result, proposals and transcript."""
    settings = _settings()
    report = _run(settings, lambda runner: runner.show(session_id))
    if as_json:
        _print_report(report)
        return
    render_result(out, report, _EMOJIS)
    for entry in report.transcript:
        content = printable(entry.content, newlines=True)
        out.print(f"[round {entry.round}] {entry.agent}: {content}", markup=False, highlight=False)


@app.command()
def resume(
    session_id: Annotated[str, typer.Argument(help="a session id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    external_agents: Annotated[
        bool, typer.Option("--external-agents", help="use agents served by `roundtable worker`")
    ] = False,
) -> None:
    """Finish an interrupted session from its event log (with --external-agents, by worker processes)."""
    settings = _settings()
    err.print(f"session {session_id}", markup=False, highlight=False)
    report = _run(
        settings,
        lambda runner: runner.resume(session_id, progress=PlainProgress(err), external=external_agents),
    )
    _output(report, as_json)


@app.command(name="retally")
def retally_command(
    session_id: Annotated[str, typer.Argument(help="a session id")],
    voting: Annotated[
        str | None, typer.Option(help="majority|rated|ranked|unanimity|approval|condorcet")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Count a session's stored ballots under another rule."""
    rule = require_rule(voting)  # required, but checked here so that the message lists the rules
    settings = _settings()
    _output(_run(settings, lambda runner: runner.retally(session_id, rule)), as_json)


@app.command(name="tally")
def tally_command(
    rule: Annotated[str | None, typer.Option(help="overrides the document's rule")] = None,
    seed: Annotated[int | None, typer.Option(help="overrides the document's seed")] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="one document per line")] = False,
) -> None:
    """Count a JSON ballot document from standard input (docs/tally.md)."""
    text = sys.stdin.buffer.read()  # bytes: tally refuses invalid UTF-8 rather than echoing it
    if jsonl:
        for line in tally_lines(text.splitlines(), rule=rule, seed=seed):
            sys.stdout.write(line + "\n")
        return
    _print_json(tally_text(text, rule=rule, seed=seed))


@app.command()
def sessions(
    status: Annotated[str | None, typer.Option(help="running|completed|failed")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List stored sessions, newest first."""
    if status is not None and status not in ("running", "completed", "failed"):
        raise BadRequest(f"unknown status '{status}'; choose one of running, completed, failed")
    rows = _run(_settings(), lambda runner: runner.runtime.store.list_sessions(status=status))
    docs = [
        {
            "id": r.id,
            "status": r.status,
            "topic": r.topic,
            "voting_rule": r.voting_rule,
            "created": r.created_at.isoformat(),
        }
        for r in rows
    ]
    if as_json:
        _print_json(docs)
        return
    table = Table("id", "status", "rule", "created", "topic")
    for d in docs:
        topic = Text(printable(d["topic"])[:60])  # Text: a topic is not Rich markup either
        table.add_row(d["id"], d["status"], d["voting_rule"], d["created"][:19], topic)
    out.print(table)


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Analytics: agent win rates and voting-rule statistics."""
    analytics = _run(_settings(), lambda runner: runner.runtime.store.stats())
    doc = analytics.model_dump(mode="json")
    if as_json:
        _print_json(doc)
        return
    agents = Table("agent", "sessions", "wins", "win rate", title="Agents")
    for a in doc["agents"]:
        agents.add_row(a["agent"], str(a["sessions"]), str(a["wins"]), f"{a['win_rate']:.0%}")
    rules = Table(
        "rule", "sessions", "consensus", "rounds", "early stop", "cost $", "duration s", title="Voting rules"
    )
    for r in doc["rules"]:
        rules.add_row(
            r["voting_rule"],
            str(r["sessions"]),
            f"{r['mean_consensus']:.0%}",
            f"{r['mean_rounds']:.1f}",
            f"{r['early_stop_rate']:.0%}",
            f"{r['mean_cost_usd']:.4f}",
            f"{r['mean_duration_s']:.1f}",
        )
    out.print(agents)
    out.print(rules)


@app.command()
def worker(
    agents: Annotated[str | None, typer.Option(help="persona ids to serve, a,b,c")] = None,
    team: Annotated[str | None, typer.Option(help="a team to serve: default|full|compact")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="serve Prometheus metrics at /metrics", min=1, max=65535),
    ] = None,
) -> None:
    """Serve persona agents as bus workers in this process, until stopped."""
    if agents and team:
        raise BadRequest("give --agents or --team, not both")
    settings = _settings(metrics_port=metrics_port)

    async def work(runner: SessionRunner) -> None:
        metrics = await runner.runtime.start_metrics()  # before the workers' mailboxes, so they count
        if metrics:
            err.print(f"metrics at {metrics}", markup=False, highlight=False, soft_wrap=True)
        served = await runner.serve(agents or team or "full")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # stop cleanly: unacknowledged requests stay pending
        description = runner.runtime.bus_description
        err.print(
            f"serving {', '.join(served.agents)} on {description} as {served.name}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # one line, however long, so a script can read the worker's name
        )
        await stop.wait()

    _run(settings, work)


@app.command()
def discord() -> None:
    """Run the Discord bot (token from DISCORD_TOKEN), with the engine and its agents in this process."""
    from adapters.discord.run import run_discord

    _serve(run_discord(_settings()))


@app.command()
def slack(
    http: Annotated[
        bool, typer.Option("--http", help="serve events over HTTP instead of Socket Mode")
    ] = False,
    port: Annotated[int, typer.Option(help="the HTTP port, with --http", min=1, max=65535)] = 3000,
) -> None:
    """Run the Slack app: Socket Mode (SLACK_APP_TOKEN), or HTTP with events at /slack/events."""
    from adapters.slack.run import run_slack

    _serve(run_slack(_settings(), http=http, port=port))


def _serve(bot: Awaitable[None]) -> None:
    """Run a bot until SIGTERM or Ctrl-C; running sessions stay `running` and resume at the next start."""

    async def main() -> None:
        task = asyncio.ensure_future(bot)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    asyncio.run(main())


def main() -> None:
    """Entry point: one-line errors, exit 2 for bad usage, never a traceback."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    level = os.environ.get("ROUNDTABLE_LOG_LEVEL", "WARNING").strip().upper()
    if level not in LOG_LEVELS:
        _fail(
            f"invalid setting ROUNDTABLE_LOG_LEVEL: '{level}'; choose one of {', '.join(LOG_LEVELS)}", USAGE
        )
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        code = app(standalone_mode=False)
    except typer.exceptions.TyperException as exc:  # typer's (vendored click) usage errors
        format_message = getattr(exc, "format_message", None)
        _fail(format_message() if format_message else str(exc), getattr(exc, "exit_code", USAGE))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except (BadRequest, SessionNotFound, RuleMismatch) as exc:
        _fail(str(exc), USAGE)
    except ValidationError as exc:  # a ROUNDTABLE_* environment variable that does not validate
        err_ = exc.errors()[0]
        where = ".".join(str(part) for part in err_["loc"])
        _fail(
            f"invalid setting ROUNDTABLE_{where.upper()}: {err_['msg'].removeprefix('Value error, ')}", USAGE
        )
    except SettingsError as exc:  # an environment value pydantic-settings cannot even decode
        _fail(f"invalid setting: {exc}", USAGE)
    except RoundTableError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted; `roundtable resume ID` finishes the session", 130)
    else:
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message.splitlines()[0] if message else 'failed'}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
