"""Commands packed for Redis in C (hiredis), for redis-py's asyncio connections.

redis-py's synchronous client packs commands with hiredis when it is installed, but its asyncio
connections always pack them in Python, argument by argument. On the bus's hot path (a publish of
100 messages is one script call of ~400 arguments) that was about a fifth of a producer's CPU time
(bench/bus.py, py-spy). `with_hiredis_packing` gives a pool's connection class the C packer; replies
are parsed by hiredis already. The protocol bytes are the same, so nothing else changes.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import DataError

_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {}


class _HiredisPacking:
    """Mixin: `pack_command` in C. Same output as redis-py's, one buffer instead of a list of chunks."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name with a space ("CONFIG GET") is several arguments.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # an argument Redis cannot take (None, a dict...), as redis-py reports it
            raise DataError(str(exc)) from exc


def with_hiredis_packing(pool: ConnectionPool) -> ConnectionPool:
    """Make the pool's future connections pack commands with hiredis (a pinned dependency)."""
    base = pool.connection_class
    if issubclass(base, _HiredisPacking):
        return pool
    packed = _PACKED.get(base)
    if packed is None:
        packed = _PACKED[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    pool.connection_class = packed
    return pool
