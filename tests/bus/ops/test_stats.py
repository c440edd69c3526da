"""Per-stream statistics (bus/ops/stats.py): length, pending and lag, empty lanes left out by default."""

from __future__ import annotations

from bus.addressing import LANES
from bus.ops import stream_stats
from tests.bus.ops.scene import build_scene


async def test_stats_shows_streams_with_entries_and_their_groups() -> None:
    scene = await build_scene()

    rows = {row.stream: row for row in await stream_stats(scene.bus, scene.workspace)}
    everything = await stream_stats(scene.bus, scene.workspace, include_empty=True)

    lane = rows[scene.lane]
    [group] = lane.groups
    assert (lane.length, group.name, group.pending, group.lag) == (3, "inbox", 0, 1)
    assert all(row.length or row.pending for row in rows.values())
    assert sum(":inbox:analyst:" in row.stream for row in everything) == LANES
