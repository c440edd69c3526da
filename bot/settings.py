"""One settings object, read from the environment once, in the composition root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.rules import VotingRule


class Settings(BaseSettings):
    """Every knob of RoundTable. Environment variables carry the prefix `ROUNDTABLE_`."""

    # validate_by_name: `Settings(bus_url=...)` works too, not only the aliases read from the environment.
    model_config = SettingsConfigDict(env_prefix="ROUNDTABLE_", extra="ignore", validate_by_name=True)

    data_dir: Path = Field(
        default=Path.home() / ".roundtable", description="where the database and the private Redis live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite file in data_dir when unset"
    )
    bus_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ROUNDTABLE_BUS_URL", "ROUNDTABLE_REDIS_URL", "REDIS_URL"),
        description="bus URL: redis://, nats:// (JetStream) or memory://; a private redis-server when unset",
    )
    workspace: str = Field(default="default", description="bus workspace (key prefix)")
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="serve the bus's Prometheus metrics at http://metrics_host:PORT/metrics "
        "(`roundtable worker`); off when unset",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="the address the metrics port listens on; 0.0.0.0 for all"
    )
    model: str | None = Field(default=None, description="LiteLLM model string; the embedded model when unset")
    api_base: str | None = Field(default=None, description="base URL for the model's API")
    api_key: str | None = Field(default=None, description="API key for the model's provider")
    agent_models: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="JSON map persona id -> model"
    )
    personas_dir: Path | None = Field(default=None, description="folder of extra persona TOML files")
    rounds: int = Field(default=3, ge=1, le=5, description="default discussion rounds")
    voting: VotingRule = Field(default="rated", description="default voting rule")
    team: str = Field(default="default", description="default team")
    turn_timeout_s: float = Field(default=60.0, gt=0, description="seconds an agent has for one turn")
    session_deadline_s: float = Field(default=300.0, gt=0, description="seconds a whole session may take")
    budget_tokens: int | None = Field(default=200_000, gt=0, description="token budget per session")
    budget_usd: float | None = Field(default=None, gt=0, description="dollar budget per session")
    external_wait_s: float = Field(
        default=10.0, gt=0, description="how long `--external-agents` waits for workers"
    )
    bus_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds a turn taken by a worker that stopped heartbeating waits before another "
        "worker of its persona takes it over; keep turn_timeout_s above this plus a turn's time",
    )
    offline_after_s: float = Field(
        default=15.0,
        gt=0,
        description="seconds without a heartbeat before the registry marks an agent offline",
    )

    # --- chat front ends (Discord, Slack) ---
    enabled_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="user ids allowed to start sessions (comma-separated); empty = all"
    )
    admin_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="role ids or names that bypass the allowlist and the rate limit"
    )
    sessions_per_user: int = Field(default=3, ge=1, description="sessions a user may start per window")
    rate_window_s: float = Field(default=3600.0, gt=0, description="the rate limit's moving window")
    sessions_per_channel: int = Field(default=1, ge=1, description="sessions running at once per channel")
    trigger_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="channels where dilemmas trigger a session without a mention (comma-separated)",
    )
    auto_trigger: bool = Field(default=True, description="start sessions on dilemmas, not only on commands")
    command_prefix: str = Field(default="!roundtable", min_length=1, description="the chat command")
    progress_interval_s: float = Field(
        default=1.5, ge=0, description="least time between two edits of a progress message"
    )
    discord_thread: bool = Field(default=False, description="open a thread per session on Discord")
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "ROUNDTABLE_DISCORD_TOKEN")
    )
    discord_api_url: str | None = Field(
        default=None, description="another base URL for Discord's REST API (tests, proxies)"
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "ROUNDTABLE_SLACK_BOT_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "ROUNDTABLE_SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "ROUNDTABLE_SLACK_APP_TOKEN")
    )
    slack_api_url: str | None = Field(default=None, description="another base URL for Slack's Web API")

    @field_validator("enabled_users", "admin_roles", "trigger_channels", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """`a,b, c` from the environment; a JSON-style list from code."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("agent_models", mode="before")
    @classmethod
    def _json_map(cls, value: Any) -> Any:
        """A JSON object from the environment, checked here so that bad JSON is a one-line error."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            raise ValueError(
                'not JSON; write a JSON object of persona id to model, like {"analyst": "openai/gpt-4o"}'
            ) from None

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'roundtable.db'}"
