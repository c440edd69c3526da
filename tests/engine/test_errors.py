"""The error tree (engine/errors.py): an `InvalidArgument` keeps its parameters apart, so an edge
can call them by its own names."""

from __future__ import annotations

import pytest

from engine.errors import BadRequest, InvalidArgument


@pytest.mark.parametrize(
    ("error", "names", "expected"),
    [
        (InvalidArgument("limit", problem="must be 1 or more, got 0"), {}, "limit must be 1 or more, got 0"),
        (
            InvalidArgument("limit", problem="must be 1 or more, got 0"),
            {"limit": "--limit"},
            "--limit must be 1 or more, got 0",
        ),
        (
            InvalidArgument("start", "since", problem="cannot be given together"),
            {"start": "--from", "since": "--since"},
            "--from and --since cannot be given together",
        ),
        (
            InvalidArgument("start", "since", problem="cannot be given together"),
            {"since": "--since"},
            "start and --since cannot be given together",
        ),
    ],
)
def test_worded_calls_each_parameter_by_the_given_name(
    error: InvalidArgument, names: dict[str, str], expected: str
) -> None:
    assert error.worded(names) == expected


def test_an_invalid_argument_is_a_bad_request_whose_message_uses_the_parameter_names() -> None:
    error = InvalidArgument("since", problem="'x' is not a time")

    assert isinstance(error, BadRequest)
    assert str(error) == "since 'x' is not a time"
    assert error.parameters == ("since",)
