"""The vote chart as a PNG, drawn with matplotlib for chat platforms that show images.

matplotlib is imported on first use (it costs about half a second) and always with the Agg backend,
since bots run without a screen. The PNG carries no timestamp, so the same votes give the same bytes.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Final

from bot.views.result import VoteBar

WINNER_COLOUR: Final = "#2e7d32"
OTHER_COLOUR: Final = "#90a4ae"
MAX_LABEL: Final = 40


def vote_chart_png(votes: Sequence[VoteBar], *, rule: str) -> bytes | None:
    """A horizontal bar chart of each proposal's score, the winner highlighted; None without votes."""
    if not votes:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    labels = [_label(bar) for bar in reversed(votes)]
    scores = [bar.score for bar in reversed(votes)]
    colours = [WINNER_COLOUR if bar.is_winner else OTHER_COLOUR for bar in reversed(votes)]
    height = 1.2 + 0.55 * len(votes)
    figure = Figure(figsize=(7.0, height), dpi=100)
    axes = figure.subplots()
    axes.barh(labels, scores, color=colours)
    for y, score in enumerate(scores):
        axes.text(score, y, f" {_number(score)}", va="center", fontsize=9)
    axes.set_xlabel(f"score ({rule})")
    axes.set_title("Votes", loc="left", fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(x=0.15)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _label(bar: VoteBar) -> str:
    title = textwrap.shorten(bar.title, MAX_LABEL, placeholder="…")
    return f"{bar.id} · {title}"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"
