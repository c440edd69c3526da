"""What a user is told when the rate limit refuses a session."""

from __future__ import annotations

import pytest

from bot.ratelimit import RateDecision, describe_duration, describe_window, refusal_message


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.0, "1 second"),
        (0.2, "1 second"),
        (1.0, "1 second"),
        (45.0, "45 seconds"),
        (59.5, "1 minute"),
        (60.0, "1 minute"),
        (61.0, "2 minutes"),
        (12 * 60 - 30, "12 minutes"),
        (3599.0, "1 hour"),
        (3600.0, "1 hour"),
        (3900.0, "1 hour 5 minutes"),
        (2 * 3600 + 60, "2 hours 1 minute"),
    ],
)
def test_a_wait_is_described_rounded_up(seconds: float, words: str) -> None:
    assert describe_duration(seconds) == words


@pytest.mark.parametrize(
    ("window_s", "words"),
    [
        (3600.0, "hour"),
        (86_400.0, "day"),
        (60.0, "minute"),
        (1800.0, "30 minutes"),
        (7200.0, "2 hours"),
        (90.0, "90 seconds"),
    ],
)
def test_a_window_is_described_in_its_largest_whole_unit(window_s: float, words: str) -> None:
    assert describe_window(window_s) == words


def test_a_refusal_says_how_many_sessions_and_how_long_to_wait() -> None:
    decision = RateDecision(allowed=False, retry_after_s=11 * 60 + 1, recent=3, limit=3, window_s=3600.0)
    assert (
        refusal_message(decision) == "you have started 3 sessions in the last hour; try again in 12 minutes"
    )


def test_a_refusal_with_one_session_in_a_short_window_reads_naturally() -> None:
    decision = RateDecision(allowed=False, retry_after_s=30.0, recent=1, limit=1, window_s=120.0)
    assert (
        refusal_message(decision)
        == "you have started 1 session in the last 2 minutes; try again in 30 seconds"
    )


def test_an_admitted_session_has_no_message() -> None:
    assert refusal_message(RateDecision(allowed=True, recent=1, limit=3, window_s=3600.0)) is None
