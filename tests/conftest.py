"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_llm import FakeLLM


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started fake OpenAI-compatible server; point LiteLLM at `fake_llm.base_url` with `openai/fake`."""
    with FakeLLM() as fake:
        yield fake
