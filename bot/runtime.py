"""The composition root: settings in, a wired bus, store, personas and model out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bot.datadir import prepare_data_dir, secure_data_dir
from bot.settings import Settings
from bus import Bus, PrivateRedis, connect_bus
from engine.errors import ConfigError
from engine.ports import LLM
from llms import resolve_model
from personas import Persona, load_personas
from storage import SqlStore

if TYPE_CHECKING:
    from bus import BusMetrics, MetricsServer

log = logging.getLogger("roundtable.bot")


class Runtime:
    """Everything a session needs, opened once per process and closed at exit."""

    def __init__(self, settings: Settings, store: SqlStore, personas: dict[str, Persona]) -> None:
        self.settings = settings
        self.store = store
        self.personas = personas
        self.bus: Bus | None = None
        self.bus_description = ""
        self._private_redis: PrivateRedis | None = None
        self._llm: LLM | None = None
        self._metrics: tuple[BusMetrics, MetricsServer] | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        """Open storage and load personas. The bus and the model are opened on first use."""
        prepare_data_dir(Path(settings.data_dir))
        try:
            personas = load_personas(settings.personas_dir)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        store = await SqlStore.open(settings.database)
        secure_data_dir(Path(settings.data_dir))  # the database file SQLite just created
        return cls(settings, store, personas)

    async def connect_bus(self) -> Bus:
        if self.bus is None:
            self.bus, self.bus_description, self._private_redis = await connect_bus(
                self.settings.bus_url, Path(self.settings.data_dir)
            )
            secure_data_dir(Path(self.settings.data_dir))  # the files a private redis-server made
            log.info("roundtable.bus_connected bus=%s", self.bus_description)
        return self.bus

    async def start_metrics(self) -> str | None:
        """Serve the bus's Prometheus metrics when `metrics_port` is set; their URL, or None.

        Call it before the process makes its mailboxes: those made earlier are not counted.

        Raises:
            ConfigError: the port cannot be bound.
        """
        port, host = self.settings.metrics_port, self.settings.metrics_host
        if port is None:
            return None
        if self._metrics is not None:
            return self._metrics[1].url
        from bus import BusMetrics  # only a process that serves metrics imports prometheus-client

        metrics = BusMetrics().install()
        try:
            server = await metrics.serve(port, host=host)
        except OSError as exc:
            metrics.uninstall()
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                "choose another --metrics-port or ROUNDTABLE_METRICS_PORT"
            ) from None
        self._metrics = (metrics, server)
        log.info("roundtable.metrics_serving url=%s", server.url)
        return server.url

    def llm(self) -> LLM:
        """The model the in-process agents call. Raises `ModelNotConfigured` with the fix in one line."""
        if self._llm is None:
            s = self.settings
            self._llm = resolve_model(s.model, s.api_base, s.api_key)
        return self._llm

    async def close(self) -> None:
        if self._metrics is not None:
            metrics, server = self._metrics
            self._metrics = None
            await server.close()
            metrics.uninstall()
        if self.bus is not None:
            await self.bus.close()
            self.bus = None
        if self._private_redis is not None:
            self._private_redis.stop()
            self._private_redis = None
        await self.store.close()
