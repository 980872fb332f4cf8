"""The book's LLM layer: one client over local and hosted providers, a typed tool registry with its
loop, and structured answers with one repair (chapter 2; reused by 3, 5, 6).

Start with ``notebooks/reasoner/01_client.ipynb`` (tools: ``03_tools``, structure: ``04_structured``).
Heavy libraries (torch, transformers, the provider SDKs) load only when a provider that needs them
is created.
"""

from .cache import ResponseCache
from .catalog import MODELS, PROVIDERS, available_providers, model_info, price_table, resolve_provider
from .client import LLMClient, RetryPolicy, make_provider
from .errors import (
    AuthenticationError,
    ContextWindowError,
    LLMError,
    MissingKeyError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UnknownModelError,
    UnknownProviderError,
)
from .structured import StructuredResult, extract_json, parse_as, repair_prompt, schema_of, structured_chat
from .tools import Tool, ToolLoopResult, ToolRegistry, ToolResult, ToolStep, run_tool_loop, spec_from_function
from .types import (
    ChatRequest,
    ChatResponse,
    ImageInput,
    Message,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
    assistant,
    system,
    tool_result,
    user,
)

__all__ = [
    "AuthenticationError", "ChatRequest", "ChatResponse", "ContextWindowError", "ImageInput", "LLMClient",
    "LLMError", "MODELS", "Message", "MissingKeyError", "PROVIDERS", "ProviderError", "ProviderTimeoutError",
    "RateLimitError", "ResponseCache", "RetryPolicy", "StreamEvent", "StructuredResult", "Tool", "ToolCall",
    "ToolLoopResult", "ToolRegistry", "ToolResult", "ToolSpec", "ToolStep", "UnknownModelError",
    "UnknownProviderError", "Usage", "assistant", "available_providers", "extract_json", "make_provider",
    "model_info", "parse_as", "price_table", "repair_prompt", "resolve_provider", "run_tool_loop", "schema_of",
    "spec_from_function", "structured_chat", "system", "tool_result", "user",
]
