"""The fake LLM server itself: valid schema instances, the OpenAI wire shape, and its knobs.

These talk plain HTTP (stdlib `http.client`), so they pin the fake independently of LiteLLM.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # installed with litellm
import pytest

from engine.schemas import DISCUSSION_SCHEMA, PROPOSAL_SCHEMA, ballot_schema
from tests.fakes.fake_llm import MALFORMED_REPLY, FakeLLM, generate_instance

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["A", "B", "C", "D"]

NESTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 12},
                "owner": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
                "days": {"type": "integer", "exclusiveMinimum": 0, "maximum": 3},
                "weight": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 0.75},
            },
            "required": ["name", "owner", "days", "weight"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "plan": {
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 2, "maxItems": 4},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 3},
                "mode": {"type": ["string", "null"], "enum": ["fast", "safe"]},
                "final": {"const": True},
            },
            "required": ["steps", "tags", "mode", "final"],
            "additionalProperties": False,
        },
        "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 0, "maxItems": 0},
        "score": {"type": "integer", "minimum": -3, "maximum": -1},
    },
    "required": ["plan", "flags", "score"],
    "additionalProperties": False,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "discussion": DISCUSSION_SCHEMA,
    "proposal": PROPOSAL_SCHEMA,
    **{rule: ballot_schema(rule, LABELS) for rule in ("majority", "rated", "approval", "ranked")},
    "nested": NESTED_SCHEMA,
}


def chat_body(content: str = "hello", schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": content}], **extra}
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        }
    return body


def post(fake: FakeLLM, path: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def get(fake: FakeLLM, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def content_of(payload: dict[str, Any]) -> str:
    return str(payload["choices"][0]["message"]["content"])


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


# -- schema instances ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("seed", [f"seed-{i}" for i in range(25)])
def test_generated_instance_validates_against_its_schema(name: str, seed: str) -> None:
    jsonschema.validate(generate_instance(SCHEMAS[name], seed=seed), SCHEMAS[name])


def test_generated_instance_is_the_same_for_the_same_seed() -> None:
    assert generate_instance(PROPOSAL_SCHEMA, seed="x") == generate_instance(PROPOSAL_SCHEMA, seed="x")


def test_generated_strings_are_words_not_empty() -> None:
    for i in range(20):
        turn = generate_instance(DISCUSSION_SCHEMA, seed=str(i))
        assert turn["message"].strip()
        assert turn["position"].strip()
        assert turn["message"].replace(" ", "").isalpha()


def test_enum_items_in_an_array_are_never_repeated() -> None:
    """A ranking or approval list names each option at most once, as the ballot parser demands."""
    schema = ballot_schema("ranked", LABELS)
    for i in range(50):
        ranking = generate_instance(schema, seed=str(i))["ranking"]
        assert len(ranking) == len(set(ranking))


def test_different_prompts_pick_different_options() -> None:
    """Agents with different prompts do not all vote alike, so tallies have something to count."""
    schema = ballot_schema("majority", LABELS)
    choices = {generate_instance(schema, seed=f"agent-{i}")["ranking"][0] for i in range(12)}
    assert len(choices) > 1


# -- the wire protocol ---------------------------------------------------------------------------


def test_reply_is_an_openai_chat_completion_with_usage(fake: FakeLLM) -> None:
    status, payload = post(fake, "/v1/chat/completions", chat_body("x" * 41))
    assert status == 200
    assert payload["object"] == "chat.completion"
    assert payload["choices"][0]["message"]["role"] == "assistant"
    assert payload["choices"][0]["finish_reason"] == "stop"
    usage = payload["usage"]
    assert usage["prompt_tokens"] == 10  # 41 chars // 4
    assert usage["completion_tokens"] == max(1, len(content_of(payload)) // 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_without_a_schema_the_reply_is_a_plain_sentence(fake: FakeLLM) -> None:
    _, payload = post(fake, "/chat/completions", chat_body())
    text = content_of(payload)
    assert text.endswith(".")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_schema_response_format_gets_a_valid_instance(fake: FakeLLM) -> None:
    _, payload = post(fake, "/v1/chat/completions", chat_body(schema=PROPOSAL_SCHEMA))
    jsonschema.validate(json.loads(content_of(payload)), PROPOSAL_SCHEMA)


def test_json_object_response_format_with_a_schema_is_honoured(fake: FakeLLM) -> None:
    schema = ballot_schema("rated", LABELS)
    body = chat_body(response_format={"type": "json_object", "schema": schema})
    _, payload = post(fake, "/v1/chat/completions", body)
    jsonschema.validate(json.loads(content_of(payload)), schema)


def test_same_request_gets_the_same_content(fake: FakeLLM) -> None:
    first = content_of(post(fake, "/v1/chat/completions", chat_body(schema=DISCUSSION_SCHEMA))[1])
    second = content_of(post(fake, "/v1/chat/completions", chat_body(schema=DISCUSSION_SCHEMA))[1])
    assert first == second


def test_requests_are_recorded_and_counted(fake: FakeLLM) -> None:
    post(fake, "/v1/chat/completions", chat_body("one"))
    post(fake, "/v1/chat/completions", chat_body("two"))
    assert fake.request_count == 2
    assert [body["messages"][0]["content"] for body in fake.requests] == ["one", "two"]
    status, stats = get(fake, "/_stats")
    assert status == 200
    assert stats["request_count"] == 2
    assert stats["recorded"] == 2


def test_models_endpoint_lists_the_fake_model(fake: FakeLLM) -> None:
    status, payload = get(fake, "/v1/models")
    assert status == 200
    assert payload["data"][0]["id"] == "fake"


def test_keep_alive_serves_several_requests_on_one_connection(fake: FakeLLM) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        for i in range(3):
            conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(str(i))))
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Connection") != "close"
            response.read()
    finally:
        conn.close()
    assert fake.request_count == 3


def test_unknown_route_is_a_404_with_an_error_body(fake: FakeLLM) -> None:
    status, payload = get(fake, "/v1/nothing")
    assert status == 404
    assert "nothing" in payload["error"]["message"]


# -- knobs ---------------------------------------------------------------------------------------


def test_error_rate_one_answers_http_500_with_an_openai_error(fake: FakeLLM) -> None:
    fake.set(error_rate=1.0)
    status, payload = post(fake, "/v1/chat/completions", chat_body())
    assert status == 500
    assert payload["error"]["type"] == "server_error"
    assert fake.request_count == 1


def test_malformed_rate_one_replies_with_chatter(fake: FakeLLM) -> None:
    fake.set(malformed_rate=1.0)
    _, payload = post(fake, "/v1/chat/completions", chat_body(schema=DISCUSSION_SCHEMA))
    assert content_of(payload) == MALFORMED_REPLY


def test_the_seed_makes_error_rolls_repeatable() -> None:
    def statuses() -> list[int]:
        with FakeLLM(error_rate=0.5, seed=7) as server:
            return [post(server, "/v1/chat/completions", chat_body())[0] for _ in range(12)]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 500}


def test_responder_content_wins_and_none_falls_back(fake: FakeLLM) -> None:
    fake.set(responder=lambda body: "scripted" if body["messages"][0]["content"] == "me" else None)
    assert content_of(post(fake, "/v1/chat/completions", chat_body("me"))[1]) == "scripted"
    fallback = content_of(post(fake, "/v1/chat/completions", chat_body("other", DISCUSSION_SCHEMA))[1])
    jsonschema.validate(json.loads(fallback), DISCUSSION_SCHEMA)


def test_fixed_reply_knob(fake: FakeLLM) -> None:
    fake.set(reply='{"ok": true}')
    assert content_of(post(fake, "/v1/chat/completions", chat_body())[1]) == '{"ok": true}'


def test_stall_never_answers_and_stop_still_returns() -> None:
    server = FakeLLM(stall=True).start()
    try:
        with pytest.raises(TimeoutError):
            post(server, "/v1/chat/completions", chat_body(), timeout=0.3)
        assert server.request_count == 1
    finally:
        server.stop()  # the stalled handler is released; the test timeout guards a hang


def test_control_endpoint_changes_knobs_at_runtime(fake: FakeLLM) -> None:
    status, stats = post(fake, "/_control", {"error_rate": 1.0, "latency_s": 0.0})
    assert status == 200
    assert stats["knobs"]["error_rate"] == 1.0
    assert post(fake, "/v1/chat/completions", chat_body())[0] == 500
    post(fake, "/_control", {"error_rate": 0.0, "reset": True})
    assert fake.request_count == 0
    assert post(fake, "/v1/chat/completions", chat_body())[0] == 200


def test_control_rejects_an_unknown_knob_naming_the_choices(fake: FakeLLM) -> None:
    status, payload = post(fake, "/_control", {"latency": 1})
    assert status == 400
    assert "latency" in payload["error"]["message"]
    assert "latency_s" in payload["error"]["message"]


def test_set_rejects_a_rate_outside_zero_to_one(fake: FakeLLM) -> None:
    with pytest.raises(ValueError, match="error_rate"):
        fake.set(error_rate=2)


@pytest.mark.server  # starts a Python process
def test_runs_as_a_module_and_prints_where_it_listens() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_llm", "--port", "0", "--error-rate", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        assert line.endswith("/v1")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body()))
        assert conn.getresponse().status == 500
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
