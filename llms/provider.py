"""Every model call goes through here: LiteLLM behind the engine's `LLM` port.

LiteLLM is imported lazily, on the first call and in a worker thread, because the import takes seconds
and ~200 MB: a process that never calls a model (`roundtable tally`, `roundtable bus`, the CLI's
`--help`) never pays for it. There is no LLM gateway on the bus yet, so every process whose agents call
a model imports LiteLLM itself. Provider failures are mapped to `LLMError` in one place,
`_provider_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from engine.errors import LLMError, ModelNotConfigured
from engine.ports import LLM, LLMRequest, LLMResponse
from llms.local import LOCAL_MODEL, LOCAL_PROVIDER, local_model_available, register_provider

log = logging.getLogger("roundtable.llm")

#: Extra seconds past the request's own timeout before the call is abandoned, in case a provider (or
#: the local model, which LiteLLM cannot interrupt) ignores the timeout it was given.
TIMEOUT_GRACE_S = 2.0

#: LiteLLM's loggers (`litellm._logging`), and the one its library modules share.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
_import_lock = threading.Lock()
_litellm: ModuleType | None = None


def import_litellm() -> ModuleType:
    """Import and quiet LiteLLM once. Blocking (seconds): call it from a thread, or at startup."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            # Without this LiteLLM downloads its price list from GitHub at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # Quiet before the import too: LiteLLM logs while it imports.
            for name in _LITELLM_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            _route_logs_to_root()
            _litellm = litellm
        return _litellm


def _route_logs_to_root() -> None:
    """Drop LiteLLM's own log handlers, so its records reach ours (on stderr) and never stdout.

    LiteLLM installs a handler that writes every record below WARNING to standard output, which
    would corrupt `--json` output under `ROUNDTABLE_LOG_LEVEL=DEBUG`.
    """
    for name in _LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


async def _load_litellm() -> ModuleType:
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(import_litellm)


class LiteLLMModel:
    """An `LLM` backed by any LiteLLM model string (`openai/gpt-4o-mini`, `ollama/llama3`, ...).

    A request's own `model` overrides the configured one (a model per persona); `api_base` and
    `api_key`, when set, apply to every call, as with one OpenAI-compatible gateway or router.

    Args:
        model: a LiteLLM model string, `provider/name`.
        api_base: the provider's base URL, e.g. `http://127.0.0.1:8000/v1`.
        api_key: the provider's key; None lets LiteLLM read its usual environment variable.
        supports_json_schema: whether to send the schema as `response_format`. None asks LiteLLM
            whether the provider takes `response_format`; False writes the schema into the system
            prompt instead. The caller validates the reply either way.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        supports_json_schema: bool | None = None,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.supports_json_schema = supports_json_schema
        self._schema_support: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"LiteLLMModel({self.model!r}, api_base={self.api_base!r})"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Complete one request.

        Raises:
            LLMError: the provider failed, refused the connection or timed out.
        """
        litellm = await _load_litellm()
        model = request.model or self.model
        if _provider(model) == LOCAL_PROVIDER:
            register_provider(litellm)
        messages = [m.model_dump() for m in request.messages]
        kwargs: dict[str, Any] = {}
        if request.json_schema is not None:
            if self._takes_json_schema(litellm, model):
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.schema_name,
                        "schema": request.json_schema,
                        "strict": True,
                    },
                }
            else:
                messages = schema_in_prompt(messages, request.json_schema)
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        started = time.perf_counter()
        deadline = started + request.timeout_s
        retries = 0
        while True:
            left = deadline - time.perf_counter()
            try:
                with _provider_errors(model, request.timeout_s, self.api_base, retries=retries):
                    async with asyncio.timeout(left + TIMEOUT_GRACE_S):
                        response = await litellm.acompletion(
                            model=model,
                            messages=messages,
                            temperature=request.temperature,
                            max_tokens=request.max_tokens,
                            timeout=left,
                            num_retries=0,
                            **kwargs,
                        )
                break
            except LLMError as exc:
                delay = retry_delay_s(exc.__cause__, retries)
                if delay is None or time.perf_counter() + delay >= deadline:
                    raise
                log.info("roundtable.llm_retry model=%s status=%s delay_s=%.2f", model, exc.status, delay)
                await asyncio.sleep(delay)
                retries += 1
        latency_ms = (time.perf_counter() - started) * 1000
        usage = getattr(response, "usage", None)
        return LLMResponse(
            text=response.choices[0].message.content or "",
            model=model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=_cost(litellm, response),
            latency_ms=round(latency_ms, 1),
            retries=retries,
        )

    def _takes_json_schema(self, litellm: ModuleType, model: str) -> bool:
        if self.supports_json_schema is not None:
            return self.supports_json_schema
        if model not in self._schema_support:
            self._schema_support[model] = _provider_takes_response_format(litellm, model)
        return self._schema_support[model]


def resolve_model(model: str | None, api_base: str | None, api_key: str | None) -> LLM:
    """The configured model, or the embedded SmolLM2 when none is configured.

    Raises:
        ModelNotConfigured: no model is configured and the embedded one is not installed.
    """
    if model:
        return LiteLLMModel(model, api_base=api_base, api_key=api_key)
    if local_model_available():
        return LiteLLMModel(LOCAL_MODEL, supports_json_schema=True)
    raise ModelNotConfigured(
        "no model configured and the embedded model is not installed; run `pip install -e '.[local]'` "
        "(or `make setup`), or pass --model provider/name (ROUNDTABLE_MODEL)"
    )


def schema_in_prompt(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages with the schema stated in the system prompt, for providers without `response_format`."""
    instruction = (
        "Reply with a single JSON object and nothing else. It must follow this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


#: HTTP statuses worth another try: rate limited, or a server error that may pass.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The first backoff, doubled on each retry, when the provider sends no `Retry-After`.
BACKOFF_S = 0.25


def retry_delay_s(error: BaseException | None, retries: int) -> float | None:
    """How long to wait before trying again after `error`, or None when it is not worth another try.

    A 429 or a 5xx is retried: after the provider's `Retry-After` (seconds, or an HTTP date) when it
    sends one, else after an exponential backoff from `BACKOFF_S`. The caller gives up when the wait
    would outlast the request's timeout.
    """
    status = getattr(error, "status_code", None)
    if status not in RETRY_STATUSES:
        return None
    after = _retry_after_s(error)
    return after if after is not None else BACKOFF_S * 2**retries


def _retry_after_s(error: BaseException | None) -> float | None:
    for source in (getattr(error, "response", None), error):
        headers = getattr(source, "headers", None) or getattr(source, "litellm_response_headers", None)
        value = headers.get("retry-after") if headers is not None else None
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


@contextmanager
def _provider_errors(
    model: str, timeout_s: float, api_base: str | None = None, *, retries: int = 0
) -> Iterator[None]:
    """Re-raise whatever the provider call raised as `LLMError`, with a one-line message.

    LiteLLM raises its own classes, the OpenAI SDK's, httpx's and plain exceptions depending on the
    provider, so everything but cancellation is mapped. `asyncio.CancelledError` is a BaseException
    and passes through untouched.
    """
    try:
        yield
    except LLMError:
        raise
    except TimeoutError as exc:
        raise LLMError(f"model {model!r} timed out after {timeout_s:g}s", retries=retries) from exc
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        raise LLMError(
            _describe(model, exc, timeout_s, api_base),
            status=status if isinstance(status, int) else None,
            retries=retries,
        ) from exc


_PREFIXES = re.compile(r"^(?:(?:litellm\.)?\w+(?:Error|Exception|Timeout)\s*[:\-]\s*)+")


def _describe(model: str, exc: Exception, timeout_s: float, api_base: str | None) -> str:
    kind = type(exc).__name__
    detail = str(getattr(exc, "message", "") or exc).strip()
    detail = _PREFIXES.sub("", detail.splitlines()[0] if detail else "").strip()
    if len(detail) > 200:
        detail = detail[:197] + "..."
    if "timeout" in kind.lower():
        return f"model {model!r} timed out after {timeout_s:g}s"
    status = getattr(exc, "status_code", None)
    if "connection error" in detail.lower() or "connect" in kind.lower():
        where = f" at {api_base}" if api_base else ""
        return f"model {model!r} could not be reached{where}: {detail or kind}"
    if isinstance(status, int):
        return f"model {model!r} failed with HTTP {status} ({kind}): {detail or 'no details'}"
    return f"model {model!r} failed ({kind}): {detail or 'no details'}"


def _cost(litellm: ModuleType, response: Any) -> float:
    """The call's price in USD, or 0.0 when LiteLLM has no price for the model."""
    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # an unpriced model raises; cost is then unknown, not an error
        return 0.0


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def _provider_takes_response_format(litellm: ModuleType, model: str) -> bool:
    """Whether LiteLLM accepts `response_format` for this model (it translates it per provider)."""
    if _provider(model) == LOCAL_PROVIDER:
        return True
    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
        params = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider)
    except Exception:
        return False
    return bool(params) and "response_format" in params
