"""Reading a stream back (bus/ops/replay.py): from an id or a time, consuming nothing; invalid
arguments are named by their parameter, not by any command-line flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.ops import parse_since, read_stream
from engine.errors import BadRequest, InvalidArgument
from tests.bus.ops.scene import build_scene

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("10m", NOW - timedelta(minutes=10)),
        (" 2h ", NOW - timedelta(hours=2)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("2025-01-30T08:00:00Z", datetime(2025, 1, 30, 8, tzinfo=UTC)),
        ("2025-01-30T08:00:00", datetime(2025, 1, 30, 8, tzinfo=UTC)),  # no zone: UTC
        ("2025-01-30T10:00:00+02:00", datetime(2025, 1, 30, 8, tzinfo=UTC)),
    ],
)
def test_parse_since_takes_an_age_or_an_iso_time(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "-5m", ""])
def test_parse_since_refuses_other_text_naming_the_since_parameter(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_since(text, now=NOW)

    assert caught.value.parameters == ("since",)
    assert str(caught.value).startswith(f"since {text!r} is not a time; use an ISO time")
    assert "--" not in str(caught.value)


async def test_read_stream_names_the_parameters_at_fault() -> None:
    scene = await build_scene()

    with pytest.raises(InvalidArgument) as both:
        await read_stream(scene.bus, scene.workspace, "inbox:analyst:p5", start="0-1", since="1h")
    with pytest.raises(InvalidArgument) as limit:
        await read_stream(scene.bus, scene.workspace, "inbox:analyst:p5", limit=0)

    assert both.value.parameters == ("start", "since")
    assert str(both.value) == "start and since cannot be given together; give one or the other"
    assert limit.value.parameters == ("limit",)
    assert str(limit.value) == "limit must be 1 or more, got 0"


async def test_read_stream_reads_back_from_an_id_or_a_time_and_consumes_nothing() -> None:
    scene = await build_scene()
    messages = [scene.failed, scene.handled, scene.waiting]

    everything = await read_stream(scene.bus, scene.workspace, "inbox:analyst:p5")
    ids = [e.entry_id for e in everything]
    from_second = await read_stream(scene.bus, scene.workspace, scene.lane, start=ids[1])
    recent = await read_stream(scene.bus, scene.workspace, "inbox:analyst:p5", since="1h", limit=2)

    assert [e.message["message_id"] for e in everything if e.message] == [m.message_id for m in messages]
    assert [e.entry_id for e in from_second] == ids[1:]
    assert [e.entry_id for e in recent] == ids[:2]
    assert await scene.bus.pending_count(scene.lane, "inbox") == 0  # read back, not handed out


async def test_read_stream_refuses_a_stream_the_workspace_does_not_have() -> None:
    scene = await build_scene()

    with pytest.raises(BadRequest, match=r"no stream 'inbox:nobody:p5'.*inbox:analyst:p5"):
        await read_stream(scene.bus, scene.workspace, "inbox:nobody:p5")
    with pytest.raises(BadRequest, match="not in workspace"):
        await read_stream(scene.bus, scene.workspace, "rt:{elsewhere}:dlq")
