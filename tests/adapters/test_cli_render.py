"""The terminal result: the consensus, exact in the report, is rounded only here, as it always was."""

from __future__ import annotations

import pytest
from rich.console import Console

from adapters.cli.render import render_result
from engine.report import SessionReport
from tests.storage.untyped import untyped_report


@pytest.mark.parametrize("consensus", [0.6667, 2 / 3])
def test_the_consensus_shows_as_a_whole_percent(consensus: float) -> None:
    """The rounded share an untyped report stored and the exact one of a new report look the same."""
    stored = untyped_report()
    report = SessionReport.model_validate({**stored, "tally": {**stored["tally"], "consensus": consensus}})
    console = Console(record=True, width=120)
    render_result(console, report, {})
    assert "consensus 67% · rule majority" in console.export_text()
