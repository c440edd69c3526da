"""`FunctionLLM`: a model made of a function, for tests and examples (after pydantic-ai's `FunctionModel`).

    async def reply(request: LLMRequest) -> str:
        return '{"stance": "ready"}' if request.json_schema else "I agree."

    llm = FunctionLLM(reply)

The function gets the whole request (messages, schema, temperature, metadata) and returns the reply's
text, or a full `LLMResponse` to set tokens and cost. Raising `LLMError` stands for a provider failure.
Every request is kept in `requests`, in order, so a test can assert on what the engine asked.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

from engine.ports import LLMRequest, LLMResponse

Reply = str | LLMResponse
ReplyFunction = Callable[[LLMRequest], Reply | Awaitable[Reply]]


class FunctionLLM:
    """An `LLM` whose replies come from `function` (sync or async).

    Args:
        function: turns a request into the reply's text or a whole `LLMResponse`.
        model: the model name a text reply is reported under.
        tokens_per_char: the token count a text reply is charged, per character of prompt and reply,
            so that budgets can be exercised without a tokenizer.
    """

    def __init__(
        self, function: ReplyFunction, *, model: str = "function", tokens_per_char: float = 0.25
    ) -> None:
        self.function = function
        self.model = model
        self.tokens_per_char = tokens_per_char
        self.requests: list[LLMRequest] = []

    def __repr__(self) -> str:
        return f"FunctionLLM({getattr(self.function, '__name__', self.function)!r})"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        started = time.perf_counter()
        reply = self.function(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, LLMResponse):
            return reply
        prompt_chars = sum(len(message.content) for message in request.messages)
        return LLMResponse(
            text=reply,
            model=request.model or self.model,
            prompt_tokens=round(prompt_chars * self.tokens_per_char),
            completion_tokens=round(len(reply) * self.tokens_per_char),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
