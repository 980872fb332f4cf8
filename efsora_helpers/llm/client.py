"""``LLMClient``: one interface over every provider, with retries, a cache, cost and a call log.

    from efsora_helpers.llm import LLMClient, user
    client = LLMClient()                        # explicit > EFSORA_LLM_PROVIDER > DeepSeek key > local
    reply = client.chat([user("How many workers?")])
    reply.text, reply.usage, reply.cost_usd

Taught in ``notebooks/reasoner/01_client.ipynb``.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import catalog, errors
from .base import Provider
from .cache import ResponseCache
from .types import ChatRequest, ChatResponse, Message, StreamEvent, ToolSpec, Usage


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when it sends one."""

    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # seeded jitter: the same delays on every run

    def delay(self, attempt: int, error: Exception) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.max_delay_s)
        return self._rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))

    @staticmethod
    def retryable(error: Exception) -> bool:
        if isinstance(error, errors.RETRYABLE):
            return True
        return isinstance(error, errors.ProviderError) and (error.status or 0) >= 500


def make_provider(name: str, base_url: str | None = None, api_key: str | None = None,
                  timeout: float = 60.0, model: str | None = None) -> Provider:
    """The adapter for a provider name; raises :class:`MissingKeyError` before any network call.
    ``model`` matters only for the local provider, whose model ids are different weights."""
    info = catalog.provider_info(name)
    if info.kind == "local":
        from .local_provider import LocalProvider

        return LocalProvider(model) if model else LocalProvider()
    key = api_key or (os.environ.get(info.key_variable) if info.key_variable else None)
    if info.any_model:
        base_url = base_url or os.environ.get(info.env_base_url or "")
        if not base_url:
            raise errors.LLMError(
                "provider 'openai_compatible' needs a server: pass base_url='http://host:port/v1' "
                "or set EFSORA_LLM_BASE_URL (Ollama: http://localhost:11434/v1)")
    elif not key:
        raise errors.MissingKeyError(name, info.key_variable or "")
    if info.kind == "anthropic":
        from .anthropic_provider import AnthropicProvider

        return AnthropicProvider(api_key=key, base_url=base_url, timeout=timeout)
    from .openai_compat import OpenAICompatibleProvider

    return OpenAICompatibleProvider(name, api_key=key, base_url=base_url or info.base_url,
                                    json_mode_kind=info.json_mode, timeout=timeout)


class LLMClient:
    """A provider plus the policies around it. ``calls`` logs every response (tokens, cost)."""

    def __init__(self, provider: str | None = None, model: str | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0, retry: RetryPolicy | None = None,
                 cache: ResponseCache | None = None, adapter: Provider | None = None):
        self.provider_name = catalog.resolve_provider(provider)
        self.model = (model or (os.environ.get(catalog.MODEL_VARIABLE) if not provider else None)
                      or catalog.default_model(self.provider_name))
        if not self.model:
            raise errors.UnknownModelError(
                f"provider {self.provider_name!r} has no default model: pass model=... or set "
                f"{catalog.MODEL_VARIABLE} (the id your server serves)")
        self.model_info = catalog.model_info(self.provider_name, self.model)
        self.adapter = adapter or make_provider(self.provider_name, base_url, api_key, timeout, self.model)
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.calls: list[ChatResponse] = []
        self.sleep = time.sleep  # replaceable in tests

    def __repr__(self) -> str:
        return f"LLMClient(provider={self.provider_name!r}, model={self.model!r})"

    @property
    def label(self) -> str:
        return f"{self.provider_name}/{self.model}"

    def request(self, messages: list[Message], **options: Any) -> ChatRequest:
        return ChatRequest(model=self.model, messages=messages, **options)

    def count_tokens(self, text: str) -> int:
        return self.adapter.count_tokens(text)

    def chat(self, messages: list[Message], tools: list[ToolSpec] | None = None, **options: Any) -> ChatResponse:
        """One call with retries and caching. ``options``: tool_choice, response_schema, json_mode,
        temperature, top_p, max_tokens, seed, stop (see :class:`ChatRequest`)."""
        request = self.request(messages, tools=tools or [], **options)
        key = request.cache_key(self.provider_name)
        if self.cache is not None and request.temperature == 0:
            t0 = time.perf_counter()
            hit = self.cache.get(key)
            if hit is not None:
                hit = hit.model_copy(update={"latency_s": time.perf_counter() - t0})  # the lookup, not the original call
                self.calls.append(hit)
                return hit
        response = self._with_retries(lambda: self.adapter.complete(request))
        response = self._priced(response)
        if self.cache is not None and request.temperature == 0:
            self.cache.put(key, response)
        self.calls.append(response)
        return response

    def stream(self, messages: list[Message], tools: list[ToolSpec] | None = None,
               **options: Any) -> Iterator[StreamEvent]:
        """Text deltas, then a ``done`` event with the priced response. Not retried once text has
        flowed (the caller has already shown it)."""
        request = self.request(messages, tools=tools or [], **options)
        for event in self.adapter.stream(request):
            if event.type == "done" and event.response is not None:
                event = StreamEvent(type="done", response=self._priced(event.response))
                self.calls.append(event.response)
            yield event

    def _priced(self, response: ChatResponse) -> ChatResponse:
        return response.model_copy(update={"cost_usd": self.model_info.cost(response.usage)})

    def _with_retries(self, call) -> ChatResponse:
        attempt = 0
        while True:
            try:
                response = call()
                return response.model_copy(update={"attempts": attempt + 1})
            except Exception as exc:  # noqa: BLE001
                if not self.retry.retryable(exc) or attempt >= self.retry.max_retries:
                    raise
                self.sleep(self.retry.delay(attempt, exc))
                attempt += 1

    def total_usage(self) -> dict[str, Any]:
        usage = sum((c.usage for c in self.calls if not c.cached), Usage())
        costs = [c.cost_usd for c in self.calls if c.cost_usd is not None]
        return {"calls": len(self.calls), "cached_calls": sum(c.cached for c in self.calls),
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cost_usd": sum(costs) if costs else None}
