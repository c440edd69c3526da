"""Load persona TOML files: the packaged ones, then a user's folder on top.

A user adds a persona by dropping `<anything>.toml` into the folder named in the settings; a user file
whose `id` matches a built-in replaces it. Nothing is cached here: the composition root loads once and
holds the result, so a test or a second runtime never sees another's personas.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from personas.model import Persona
from personas.teams import TEAMS

_DATA_PACKAGE = "personas"
_DATA_FOLDER = "data"
#: Characters of a bad value quoted in an error; a whole prompt would not fit on one line.
_MAX_SHOWN = 60


class PersonaFileError(ValueError):
    """A persona file (or the folder of them) cannot be used. The message names the file and the problem."""

    def __init__(self, source: str, problem: str, *, what: str = "persona file") -> None:
        super().__init__(f"{what} {source}: {problem}")
        self.source = source
        self.problem = problem


def load_personas(extra_dir: Path | None = None) -> dict[str, Persona]:
    """Load the built-in personas, plus every `*.toml` in `extra_dir`, keyed by id.

    Args:
        extra_dir: a folder of user persona files; a file with a built-in's id overrides it.

    Raises:
        PersonaFileError: a file is not valid TOML or UTF-8, a field is missing or wrong, two files of
            one folder share an id, or `extra_dir` is not a folder.
    """
    personas = _load_folder(resources.files(_DATA_PACKAGE) / _DATA_FOLDER)
    if extra_dir is not None:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise PersonaFileError(str(folder), "does not exist or is not a folder", what="personas folder")
        personas.update(_load_folder(folder))
    return personas


def load_persona_file(source: Traversable) -> Persona:
    """Parse and validate one persona file.

    Raises:
        PersonaFileError: the file is unreadable, not TOML, or a field is missing or invalid.
    """
    name = str(source)
    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PersonaFileError(name, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PersonaFileError(name, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PersonaFileError(name, f"is not valid TOML: {_one_line(str(exc))}") from None
    return _validate(name, data)


def _load_folder(folder: Traversable) -> dict[str, Persona]:
    loaded: dict[str, Persona] = {}
    seen_in: dict[str, str] = {}
    files = sorted(
        (f for f in folder.iterdir() if f.is_file() and f.name.endswith(".toml")), key=lambda f: f.name
    )
    for source in files:
        persona = load_persona_file(source)
        if persona.id in seen_in:
            raise PersonaFileError(
                str(source),
                f"id '{persona.id}' is already defined by {seen_in[persona.id]}; ids must be unique",
            )
        seen_in[persona.id] = str(source)
        loaded[persona.id] = persona
    return loaded


def _validate(name: str, data: dict[str, Any]) -> Persona:
    if isinstance(data.get("id"), str) and data["id"] in TEAMS:
        raise PersonaFileError(
            name, f"id '{data['id']}' is a team name; choose an id other than {', '.join(TEAMS)}"
        )
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise PersonaFileError(name, "; ".join(problems)) from None


def _describe(error: Any) -> str:
    """One pydantic error as `field: problem (got value)`, on one line."""
    field = ".".join(str(part) for part in error["loc"]) or "(file)"
    kind = error["type"]
    if kind == "missing":
        return f"{field}: required field is missing"
    if kind == "extra_forbidden":
        fields = ", ".join(Persona.model_fields)
        return f"unknown field '{field}'; the fields are {fields}"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = repr(error["input"])
    if len(got) > _MAX_SHOWN:
        got = got[: _MAX_SHOWN - 3] + "..."
    return f"{field}: {_one_line(message)} (got {got})"


def _one_line(text: str) -> str:
    return " ".join(text.split())
