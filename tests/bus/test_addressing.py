"""The workspace's key names (bus/addressing.py): every key sits under the workspace's hash tag."""

from __future__ import annotations

import pytest

from bus.addressing import audit_key, dlq_key, dlq_replayed_key, members_key
from engine.errors import BadRequest


def test_the_replayed_dead_letters_table_is_a_key_of_its_own_under_the_workspace() -> None:
    assert dlq_replayed_key("ws1") == "rt:{ws1}:dlq:replayed"
    assert dlq_replayed_key("ws1") not in {dlq_key("ws1"), audit_key("ws1"), members_key("ws1")}
    assert dlq_replayed_key("ws1") != dlq_replayed_key("ws2")


def test_a_workspace_unfit_for_a_key_is_refused() -> None:
    with pytest.raises(BadRequest):
        dlq_replayed_key("no spaces}")
