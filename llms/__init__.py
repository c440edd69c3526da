"""The model clients behind the engine's `LLM` port: any LiteLLM provider (`LiteLLMModel`), the embedded
SmolLM2 model run locally through llama-cpp-python, and `FunctionLLM`, a model made of a function for
tests. LiteLLM and llama-cpp are imported lazily, on the first call."""

from llms.function import FunctionLLM
from llms.provider import LiteLLMModel, import_litellm, resolve_model

__all__ = ["FunctionLLM", "LiteLLMModel", "import_litellm", "resolve_model"]
