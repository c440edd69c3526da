"""The bus on Redis Streams: the backend, its Lua scripts and codec, a private redis-server, and the
Redis rate limiter. Nothing here is imported by the NATS backend, or by the core unless Redis is chosen."""

from bus.redis.ratelimit import RedisRateLimiter
from bus.redis.server import PrivateRedis, redis_server_binary
from bus.redis.streams import RedisBus

__all__ = ["PrivateRedis", "RedisBus", "RedisRateLimiter", "redis_server_binary"]
