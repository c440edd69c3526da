"""A persona: who an agent is, as one validated record.

A persona is data, not code, so that a user can add or override one by dropping a TOML file into a
folder. The model is strict and forbids unknown fields: a typo such as `temprature` in a user file
must fail loudly at load time, not silently fall back to a default.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: A persona id: lowercase, starts with a letter, at most 32 characters. It names bus streams and
#: appears in the command grammar (`--team analyst,skeptic`), so it stays plain.
PERSONA_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class Persona(BaseModel):
    """One deliberating agent's identity, method and sampling settings."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str = Field(pattern=PERSONA_ID_PATTERN)
    name: str = Field(min_length=1)
    emoji: str = Field(min_length=1)
    #: One line; the prompt reads "You are {name} {emoji}, {role}."
    role: str = Field(min_length=1)
    expertise: list[str] = Field(min_length=1)
    #: Descriptive for now ("data analysis", "risk assessment"); nothing executes them.
    tools: list[str] = Field(default_factory=list)
    temperature: float = Field(ge=0.0, le=2.0)
    prompt: str = Field(min_length=1)
    #: A LiteLLM model string for this persona only; absent means the session's model.
    model: str | None = None

    @field_validator("name", "emoji", "role", "prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("name", "emoji", "role")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be a single line")
        return value

    @field_validator("expertise", "tools")
    @classmethod
    def _items_not_blank(cls, value: list[str]) -> list[str]:
        items = [item.strip() for item in value]
        if any(not item for item in items):
            raise ValueError("must not contain blank entries")
        return items

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank; leave the field out to use the session's model")
        return value.strip() if value is not None else None
