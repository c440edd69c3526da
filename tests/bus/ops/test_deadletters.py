"""Dead letters for the operator (bus/ops/deadletters.py), on the in-memory bus; the command line runs
the same on Redis in tests/adapters/test_bus_cli.py."""

from __future__ import annotations

import pytest

from bus import Mailbox
from bus.ops import DeadLetters
from engine.errors import BadRequest, InvalidArgument
from tests.bus.ops.scene import build_scene


async def test_newest_refuses_a_limit_below_one_by_the_parameter_name() -> None:
    scene = await build_scene()

    with pytest.raises(InvalidArgument) as caught:
        await DeadLetters(scene.bus, scene.workspace).newest(limit=0)

    assert caught.value.parameters == ("limit",)
    assert str(caught.value) == "limit must be 1 or more, got 0"


async def test_a_failed_message_is_listed_shown_by_message_id_and_replayed_once() -> None:
    scene = await build_scene()
    letters = DeadLetters(scene.bus, scene.workspace)

    page = await letters.newest()
    [row] = page.letters
    view = await letters.show(scene.failed.message_id)
    first = await letters.replay(row.id)
    again = await letters.replay_all()

    assert (page.total, row.reason, row.message_id) == (1, "handler_failed", scene.failed.message_id)
    assert view.id == row.id
    assert view.message is not None
    assert view.message["content"] == {"n": 0}
    assert (first.status, first.stream) == ("replayed", scene.lane)
    assert [(o.status, o.reason.split(",")[0]) for o in again] == [("skipped", "replayed already")]
    assert (await letters.newest()).letters[0].replayed is not None  # kept, and marked
    inbox = Mailbox(scene.bus, scene.workspace, "analyst")
    handed = [(e.message.message_id, e.deliveries) for e in await inbox.receive(block_ms=0)]
    assert (scene.failed.message_id, 1) in handed  # sent again, with a fresh delivery count


async def test_show_refuses_an_id_no_dead_letter_has() -> None:
    scene = await build_scene()

    with pytest.raises(BadRequest, match="no dead letter '1-1'"):
        await DeadLetters(scene.bus, scene.workspace).show("1-1")
