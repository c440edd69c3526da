"""Finding a message by id (bus/ops/find.py), and where it stands in its consumer group."""

from __future__ import annotations

import pytest

from bus.ops import find_message
from engine.errors import InvalidArgument
from tests.bus.ops.scene import build_scene


async def test_find_tells_each_entry_about_a_message_and_its_state() -> None:
    scene = await build_scene()

    failed = await find_message(scene.bus, scene.workspace, scene.failed.message_id)
    [handled] = await find_message(scene.bus, scene.workspace, scene.handled.message_id)
    [waiting] = await find_message(scene.bus, scene.workspace, scene.waiting.message_id)

    assert {"dead_letter", "message"} <= {hit.kind for hit in failed}
    assert (handled.kind, handled.stream) == ("message", scene.lane)
    assert [(g.group, g.state) for g in handled.groups] == [("inbox", "acknowledged")]
    assert [(g.group, g.state) for g in waiting.groups] == [("inbox", "waiting")]
    assert await find_message(scene.bus, scene.workspace, "no-such-id") == []


async def test_find_refuses_a_blank_id_by_the_parameter_name() -> None:
    scene = await build_scene()

    with pytest.raises(InvalidArgument) as caught:
        await find_message(scene.bus, scene.workspace, "  ")

    assert caught.value.parameters == ("message_id",)
    assert str(caught.value).startswith("message_id is blank;")
