"""Commands packed by hiredis (bus/redis/codec.py) are byte for byte what redis-py packs itself."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.exceptions import DataError
from redis.typing import EncodableT

from bus.redis.codec import with_hiredis_packing

COMMANDS: list[tuple[EncodableT, ...]] = [
    ("PING",),
    (
        "EVALSHA",
        "abc123",
        2,
        "rt:{ws}:inbox:a:p5",
        "rt:{ws}:inbox:b:p5",
        "MAXLEN",
        100_000,
        "é ü",
        b"\x00\xff",
    ),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "bus"),
    ("XADD", "s", "*", "msg", "x" * 70_000),  # past redis-py's chunking cutoff
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packing_matches_redis_py(command: tuple[EncodableT, ...]) -> None:
    pool = with_hiredis_packing(BlockingConnectionPool(connection_class=Connection))
    packed = pool.connection_class().pack_command(*command)
    assert b"".join(packed) == b"".join(Connection().pack_command(*command))


def test_an_argument_redis_cannot_take_is_a_data_error() -> None:
    pool = with_hiredis_packing(BlockingConnectionPool(connection_class=Connection))
    with pytest.raises(DataError):
        pool.connection_class().pack_command("SET", "k", None)  # type: ignore[arg-type]  # what is tested


def test_packing_is_added_once() -> None:
    pool = with_hiredis_packing(with_hiredis_packing(BlockingConnectionPool(connection_class=Connection)))
    assert pool.connection_class.__name__ == "HiredisConnection"
    assert pool.connection_class.__mro__[2] is Connection
