"""The budget's state is the spent share of the tightest budget: ok, warn from 80%, exhausted at 100%."""

from __future__ import annotations

import pytest

from engine.budget import budget_state
from engine.config import Limits
from engine.turns import Usage


@pytest.mark.parametrize(
    ("tokens", "cost_usd", "limits", "state", "share"),
    [
        (0, 0.0, Limits(budget_tokens=1000), "ok", 0.0),
        (799, 0.0, Limits(budget_tokens=1000), "ok", 0.799),
        (800, 0.0, Limits(budget_tokens=1000), "warn", 0.8),
        (999, 0.0, Limits(budget_tokens=1000), "warn", 0.999),
        (1000, 0.0, Limits(budget_tokens=1000), "exhausted", 1.0),
        (1500, 0.0, Limits(budget_tokens=1000), "exhausted", 1.5),
        (500, 0.0, Limits(budget_tokens=1000, budget_warn_ratio=0.5), "warn", 0.5),
        (0, 0.4, Limits(budget_tokens=None, budget_usd=0.5), "warn", 0.8),
        (0, 0.5, Limits(budget_tokens=None, budget_usd=0.5), "exhausted", 1.0),
        # the tightest budget decides
        (100, 0.45, Limits(budget_tokens=1000, budget_usd=0.5), "warn", 0.9),
        (900, 0.05, Limits(budget_tokens=1000, budget_usd=0.5), "warn", 0.9),
        # no budget at all: never exhausted
        (10**9, 10.0, Limits(budget_tokens=None, budget_usd=None), "ok", 0.0),
    ],
)
def test_budget_state(tokens: int, cost_usd: float, limits: Limits, state: str, share: float) -> None:
    usage = Usage(prompt_tokens=tokens, cost_usd=cost_usd)
    got_state, got_share = budget_state(usage, limits)
    assert got_state == state
    assert got_share == pytest.approx(share)
