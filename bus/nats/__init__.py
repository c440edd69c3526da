"""The bus on NATS JetStream: each bus stream a JetStream stream, each group a durable pull consumer,
claims and tables in JetStream KV. Imported only when a `nats://` URL chooses it."""

from bus.nats.jetstream import NatsBus

__all__ = ["NatsBus"]
