"""The book's LLM layer: one client over local and hosted providers (chapter 2; reused by 3, 5, 6).

Start with ``notebooks/reasoner/01_client.ipynb``. Heavy libraries (torch, transformers, the
provider SDKs) load only when a provider that needs them is created.
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
    "RateLimitError", "ResponseCache", "RetryPolicy", "StreamEvent", "ToolCall", "ToolSpec", "UnknownModelError",
    "UnknownProviderError", "Usage", "assistant", "available_providers", "make_provider", "model_info",
    "price_table", "resolve_provider", "system", "tool_result", "user",
]
