"""Errors of the LLM layer. Each message says what to do; none ever contains a key.

Taught in ``notebooks/reasoner/01_client.ipynb``.
"""

from __future__ import annotations


class LLMError(RuntimeError):
    """Base class: anything the LLM layer raises on purpose."""


class MissingKeyError(LLMError):
    def __init__(self, provider: str, variable: str):
        self.provider, self.variable = provider, variable
        super().__init__(
            f"provider {provider!r} needs an API key: set {variable} in the environment or in a "
            f"git-ignored .env at the repository root (or use provider='local', which needs none)"
        )


class UnknownProviderError(LLMError):
    pass


class UnknownModelError(LLMError):
    pass


class RateLimitError(LLMError):
    """HTTP 429 or a provider's overload signal; ``retry_after`` in seconds when the server said."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class ProviderTimeoutError(LLMError):
    pass


class ProviderConnectionError(LLMError):
    pass


class AuthenticationError(LLMError):
    pass


class ProviderError(LLMError):
    """Any other error the provider returned (bad request, server error); ``status`` if HTTP."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class InvalidRequestError(LLMError):
    """The caller's request cannot be served as sent (e.g. the engine cannot compile its JSON Schema);
    the message says what to change. The loopback server answers it with HTTP 400."""


class ContextWindowError(LLMError):
    def __init__(self, prompt_tokens: int, max_tokens: int, context_window: int, model: str):
        self.prompt_tokens, self.max_tokens, self.context_window = prompt_tokens, max_tokens, context_window
        super().__init__(
            f"{model}: the prompt has {prompt_tokens} tokens and {max_tokens} more are reserved for "
            f"the answer, over the context window of {context_window}; shorten the prompt "
            f"(PromptEngine(token_budget=...)) or lower max_tokens"
        )


def translate_sdk_error(exc: Exception, sdk, provider: str, model: str) -> Exception:
    """An ``openai`` or ``anthropic`` SDK exception as one of ours (both SDKs share class names)."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeoutError(f"{provider}: no answer within the timeout ({exc})")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderConnectionError(f"{provider}: cannot connect ({exc.__cause__ or exc})")
    if isinstance(exc, sdk.RateLimitError):
        retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
        return RateLimitError(f"{provider}: rate limited (HTTP 429); slow down or raise your quota",
                              float(retry_after) if retry_after else None)
    if isinstance(exc, sdk.AuthenticationError):
        return AuthenticationError(f"{provider}: the API key was refused (HTTP 401); check its value")
    if isinstance(exc, sdk.NotFoundError):
        return UnknownModelError(f"{provider}: model {model!r} not found (HTTP 404)")
    if isinstance(exc, sdk.APIStatusError):
        return ProviderError(f"{provider}: HTTP {exc.status_code}: {exc.message}", exc.status_code)
    return exc


RETRYABLE = (RateLimitError, ProviderTimeoutError, ProviderConnectionError)
