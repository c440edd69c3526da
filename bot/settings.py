"""One settings object, read from the environment once, in the composition root."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.rules import VotingRule


class Settings(BaseSettings):
    """Every knob of RoundTable. Environment variables carry the prefix `ROUNDTABLE_`."""

    model_config = SettingsConfigDict(env_prefix="ROUNDTABLE_", extra="ignore")

    data_dir: Path = Field(
        default=Path.home() / ".roundtable", description="where the database and the private Redis live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite file in data_dir when unset"
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ROUNDTABLE_REDIS_URL", "REDIS_URL"),
        description="Redis for the bus; a private redis-server when unset",
    )
    workspace: str = Field(default="default", description="bus workspace (key prefix)")
    model: str | None = Field(default=None, description="LiteLLM model string; the embedded model when unset")
    api_base: str | None = Field(default=None, description="base URL for the model's API")
    api_key: str | None = Field(default=None, description="API key for the model's provider")
    agent_models: dict[str, str] = Field(default_factory=dict, description="JSON map persona id -> model")
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

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'roundtable.db'}"
