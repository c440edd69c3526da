"""Operating the bus: dead letters, finding and replaying messages, statistics, and Prometheus metrics.

- `deadletters.py`: a workspace's dead letters listed, shown and replayed (`DeadLetters`);
- `find.py`: a message found by id across the workspace, and where it stands in each group;
- `replay.py`: a stream read back for audit from an id or a time, consuming nothing;
- `stats.py`: per-stream length, pending entries, lag and consumers;
- `facade.py`: `BusOps`, all of the above bound to one bus and workspace, for a front end;
- `metrics.py`: the Prometheus exporter of a worker (`BusMetrics`, `MetricsServer`).

What they look into (streams, groups, pending entries) is `bus/inspection.py`, which the backends
implement. The metrics are loaded on first use, so that a process that serves none never imports
prometheus-client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bus.ops.deadletters import (
    DeadLetterPage,
    DeadLetterRow,
    DeadLetters,
    DeadLetterView,
    ReplayMark,
    ReplayOutcome,
)
from bus.ops.facade import BusOps
from bus.ops.find import EntryKind, FoundEntry, GroupState, find_message
from bus.ops.replay import StreamEntry, parse_since, read_stream
from bus.ops.stats import StreamStats, stream_stats

if TYPE_CHECKING:
    from bus.ops.metrics import BusMetrics, MetricsServer

#: Names loaded on first use, and the module that holds each.
_LAZY = {"BusMetrics": "bus.ops.metrics", "MetricsServer": "bus.ops.metrics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bus.ops' has no attribute {name!r}")


__all__ = [
    "BusMetrics",
    "BusOps",
    "DeadLetterPage",
    "DeadLetterRow",
    "DeadLetterView",
    "DeadLetters",
    "EntryKind",
    "FoundEntry",
    "GroupState",
    "MetricsServer",
    "ReplayMark",
    "ReplayOutcome",
    "StreamEntry",
    "StreamStats",
    "find_message",
    "parse_since",
    "read_stream",
    "stream_stats",
]
