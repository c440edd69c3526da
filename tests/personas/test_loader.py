"""Loading persona files: the six built-ins, a user's folder on top, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from personas import PERSONA_ID_PATTERN, Persona, PersonaFileError, load_persona_file, load_personas

BUILT_IN = {
    "analyst": ("Analyst", "📊", 0.3),
    "creative": ("Creative", "💡", 0.9),
    "skeptic": ("Skeptic", "🔍", 0.4),
    "pragmatist": ("Pragmatist", "🔧", 0.5),
    "ethicist": ("Ethicist", "⚖️", 0.5),
    "summarizer": ("Summarizer", "📝", 0.3),
}

VALID = """\
id = "historian"
name = "Historian"
emoji = "📜"
role = "a historian who looks for precedents"
expertise = ["history", "precedent"]
tools = ["archive search"]
temperature = 0.6
prompt = \"\"\"
Look for precedents and what happened last time.
Be concise, engage with the others by name, and change your position when persuaded.
\"\"\"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_exactly_the_six_built_ins_load() -> None:
    assert set(load_personas()) == set(BUILT_IN)


@pytest.mark.parametrize(("persona_id", "expected"), BUILT_IN.items())
def test_built_in_has_its_name_emoji_and_temperature(
    persona_id: str, expected: tuple[str, str, float]
) -> None:
    persona = load_personas()[persona_id]
    assert (persona.name, persona.emoji, persona.temperature) == expected


def test_ethicist_emoji_keeps_its_variation_selector() -> None:
    """⚖️ is U+2696 U+FE0F; without the selector some terminals draw a monochrome glyph."""
    assert load_personas()["ethicist"].emoji == "\u2696\ufe0f"


@pytest.mark.parametrize("persona_id", sorted(BUILT_IN))
def test_built_in_fields_are_complete(persona_id: str) -> None:
    persona = load_personas()[persona_id]
    assert re.fullmatch(PERSONA_ID_PATTERN, persona.id)
    assert persona.role
    assert "\n" not in persona.role
    assert persona.expertise
    assert all(persona.expertise)
    assert persona.tools
    assert all(persona.tools)
    assert persona.model is None


@pytest.mark.parametrize("persona_id", sorted(BUILT_IN))
def test_built_in_prompt_is_8_to_15_lines_and_asks_for_engagement(persona_id: str) -> None:
    """Each prompt tells the persona to be concise, answer others by name, and yield when persuaded."""
    prompt = load_personas()[persona_id].prompt
    assert 8 <= len(prompt.splitlines()) <= 15
    lowered = prompt.lower()
    assert "concise" in lowered
    assert "by name" in lowered
    assert "never" in lowered
    assert any(words in lowered for words in ("change your", "changing your", "update your", "move your"))


def test_built_in_prompts_are_distinct() -> None:
    prompts = [p.prompt for p in load_personas().values()]
    assert len(set(prompts)) == len(prompts)


def test_each_call_returns_a_fresh_dict() -> None:
    """Nothing is cached globally: one caller's changes never leak into another's personas."""
    first = load_personas()
    del first["analyst"]
    assert "analyst" in load_personas()


def test_user_folder_adds_a_persona(tmp_path: Path) -> None:
    write(tmp_path, "historian.toml", VALID)
    personas = load_personas(tmp_path)
    assert set(personas) == {*BUILT_IN, "historian"}
    historian = personas["historian"]
    assert historian.emoji == "📜"
    assert historian.tools == ["archive search"]
    assert historian.prompt.startswith("Look for precedents")


def test_user_file_with_a_built_in_id_overrides_it(tmp_path: Path) -> None:
    text = VALID.replace('id = "historian"', 'id = "skeptic"') + 'model = "anthropic/claude-haiku-4-5"\n'
    write(tmp_path, "my-skeptic.toml", text)
    personas = load_personas(tmp_path)
    assert len(personas) == len(BUILT_IN)
    assert personas["skeptic"].name == "Historian"
    assert personas["skeptic"].model == "anthropic/claude-haiku-4-5"


def test_user_folder_ignores_files_that_are_not_toml(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "not a persona")
    write(tmp_path, "historian.toml.bak", "id = [")
    assert set(load_personas(tmp_path)) == set(BUILT_IN)


def test_tools_may_be_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, "h.toml", VALID.replace('tools = ["archive search"]\n', ""))
    assert load_persona_file(path).tools == []


def test_missing_user_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PersonaFileError, match=r"^personas folder .*nowhere: does not exist"):
        load_personas(missing)


def test_two_user_files_with_one_id_are_an_error_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", VALID)
    write(tmp_path, "b.toml", VALID)
    with pytest.raises(PersonaFileError) as caught:
        load_personas(tmp_path)
    message = str(caught.value)
    assert "a.toml" in message
    assert "b.toml" in message
    assert "'historian'" in message


def test_persona_id_may_not_be_a_team_name(tmp_path: Path) -> None:
    write(tmp_path, "full.toml", VALID.replace('id = "historian"', 'id = "full"'))
    with pytest.raises(
        PersonaFileError, match=r"id 'full' is a team name; choose an id other than default, full"
    ):
        load_personas(tmp_path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("temperature = 0.6", "temperature = 3.5"),
            "temperature: Input should be less than or equal to 2 (got 3.5)",
        ),
        (
            ("temperature = 0.6", "temperature = -1"),
            "temperature: Input should be greater than or equal to 0",
        ),
        (("temperature = 0.6", 'temperature = "warm"'), "temperature: Input should be a valid number"),
        (("temperature = 0.6", "temprature = 0.6"), "unknown field 'temprature'; the fields are id, name"),
        (('id = "historian"', 'id = "Historian"'), "id: String should match pattern"),
        (('id = "historian"', ""), "id: required field is missing"),
        (('emoji = "📜"\n', ""), "emoji: required field is missing"),
        (
            ('expertise = ["history", "precedent"]', "expertise = []"),
            "expertise: List should have at least 1 item",
        ),
        (
            ('expertise = ["history", "precedent"]', 'expertise = "history"'),
            "expertise: Input should be a valid list",
        ),
        (('tools = ["archive search"]', 'tools = ["  "]'), "tools: must not contain blank entries"),
        (
            ('role = "a historian who looks for precedents"', 'role = "two\\nlines"'),
            "role: must be a single line",
        ),
        (('role = "a historian who looks for precedents"', 'role = "   "'), "role: must not be blank"),
        (("temperature = 0.6", 'temperature = 0.6\nmodel = ""'), "model: must not be blank"),
    ],
)
def test_malformed_field_is_one_line_naming_file_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, "historian.toml", VALID.replace(*change))
    with pytest.raises(PersonaFileError) as caught:
        load_personas(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"persona file {path}: ")
    assert expected in message
    assert "\n" not in message
    assert caught.value.source == str(path)


def test_blank_prompt_is_rejected(tmp_path: Path) -> None:
    text = VALID.split("prompt =")[0] + 'prompt = """\n   \n"""\n'
    path = write(tmp_path, "h.toml", text)
    with pytest.raises(PersonaFileError, match=r"prompt: must not be blank"):
        load_persona_file(path)


def test_long_bad_value_is_shortened_in_the_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "h.toml",
        VALID.replace('role = "a historian who looks for precedents"', f"role = {['x'] * 100}"),
    )
    with pytest.raises(PersonaFileError) as caught:
        load_persona_file(path)
    assert "...)" in str(caught.value)
    assert len(str(caught.value)) < 300


def test_invalid_toml_is_one_line_with_position(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.toml", 'id = "x"\nname = \n')
    with pytest.raises(PersonaFileError, match=r"broken\.toml: is not valid TOML: .*line 2") as caught:
        load_persona_file(path)
    assert "\n" not in str(caught.value)


def test_non_utf8_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(PersonaFileError, match=r"latin1\.toml: is not UTF-8 text"):
        load_persona_file(path)


def test_persona_file_error_is_a_value_error() -> None:
    """The engine maps `ValueError`s from this package into its own tree; this one must be one."""
    assert issubclass(PersonaFileError, ValueError)


def test_persona_is_immutable() -> None:
    persona = load_personas()["analyst"]
    with pytest.raises(ValueError, match="frozen"):
        persona.temperature = 1.0  # type: ignore[misc]
    assert isinstance(persona, Persona)
