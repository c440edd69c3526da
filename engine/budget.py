"""A session's spending against its budget."""

from __future__ import annotations

from typing import Literal

from engine.config import Limits
from engine.turns import Usage

BudgetState = Literal["ok", "warn", "exhausted"]


def budget_state(usage: Usage, limits: Limits) -> tuple[BudgetState, float]:
    """The state and the spent share of the tightest budget (tokens or dollars)."""
    shares = []
    if limits.budget_tokens:
        shares.append(usage.tokens / limits.budget_tokens)
    if limits.budget_usd:
        shares.append(usage.cost_usd / limits.budget_usd)
    share = max(shares, default=0.0)
    if share >= 1.0:
        return "exhausted", share
    if share >= limits.budget_warn_ratio:
        return "warn", share
    return "ok", share
