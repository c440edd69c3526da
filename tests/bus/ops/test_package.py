"""The `bus.ops` package: its face exports the tools, and importing it loads no prometheus-client."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.server  # imports in a fresh interpreter
def test_importing_bus_ops_loads_prometheus_only_when_metrics_are_asked_for() -> None:
    script = (
        "import sys, bus.ops\n"
        "print('prometheus_client' in sys.modules)\n"
        "bus.ops.BusMetrics\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert proc.stdout.split() == ["False", "True"]
