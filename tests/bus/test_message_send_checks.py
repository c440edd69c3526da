"""`AgentMessage.to_fields` writes a validated message as it is, and still refuses a bad one."""

from __future__ import annotations

from typing import Any

import pytest

from bus import AgentMessage
from engine.errors import BadRequest


def make(**extra: Any) -> AgentMessage:
    return AgentMessage(from_agent="analyst", message_type="notification", content={"n": 1}, **extra)


def test_a_valid_message_round_trips_through_its_fields() -> None:
    message = make(metadata={"k": "v"}, priority=7, ttl=2.5)
    assert AgentMessage.from_fields(message.to_fields()) == message
    built = AgentMessage.model_construct(**make().__dict__)
    assert AgentMessage.from_fields(built.to_fields()) == built


def test_a_copy_of_an_unvalidated_message_is_still_checked() -> None:
    bad = make().model_copy(update={"priority": 12})
    with pytest.raises(BadRequest, match="priority"):
        bad.model_copy().to_fields()
    with pytest.raises(BadRequest, match="priority"):
        bad.model_copy(deep=True).to_fields()


def test_assigning_a_valid_field_does_not_vouch_for_the_others() -> None:
    shout: dict[str, Any] = {"from_agent": "x", "message_type": "shout"}
    built = AgentMessage.model_construct(**shout)
    built.priority = 3
    with pytest.raises(BadRequest, match="message_type"):
        built.to_fields()


def test_a_wrong_value_put_into_a_validated_message_in_place_is_refused() -> None:
    message = make(metadata={"k": "v"})
    message.metadata["k"] = 5  # type: ignore[assignment]
    with pytest.raises(BadRequest, match=r"invalid AgentMessage: metadata\.k: .*valid string, got 5"):
        message.to_fields()
    message = make()
    message.content["when"] = object()
    with pytest.raises(BadRequest, match="content is not JSON-serializable"):
        message.to_fields()
