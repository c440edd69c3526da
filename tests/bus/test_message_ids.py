"""Message ids: what `docs/bus-protocol.md` promises (32 hex digits, a uuid4), unique, also across fork."""

from __future__ import annotations

import multiprocessing as mp
import uuid

import pytest

from bus import AgentMessage


def new_id() -> str:
    return AgentMessage(from_agent="a", message_type="notification").message_id


def test_message_ids_are_uuid4_hex() -> None:
    for _ in range(1000):
        message_id = new_id()
        parsed = uuid.UUID(message_id)
        assert parsed.hex == message_id
        assert len(message_id) == 32
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@pytest.mark.server  # forks
def test_message_ids_do_not_repeat_in_a_process_or_its_forked_child() -> None:
    assert len({new_id() for _ in range(20_000)}) == 20_000
    with mp.get_context("fork").Pool(1) as pool:
        # Parent and child go on from the same memory: a generator state copied by fork would repeat.
        mine = {new_id() for _ in range(1000)}
        child = set(pool.apply(_ids_in_child))
    assert len(child) == 1000
    assert not child & mine


def _ids_in_child() -> list[str]:
    return [new_id() for _ in range(1000)]
