"""LangChain chat models for every provider of the ``llm`` layer (chapter 3 and later).

LangGraph's prebuilt pieces (tool nodes, interrupts, checkpointers) and LangChain's
``bind_tools`` / ``with_structured_output`` speak LangChain's chat-model interface. This module is
the bridge: :func:`chat_model` returns a ``BaseChatModel`` for the same provider names the rest of
the book uses, so an agent written once runs on the local model and on a hosted one.

* ``local``: ``ChatOpenAI`` pointed at the book's loopback server (:class:`~.server.LocalServer`)
  that serves SmolLM2-135M-Instruct on onnxruntime-genai. One server per process and local model id
  (``smollm2-135m-warehouse``: chapter 4's tuned model) is started on first use and stopped at exit;
  every chat model of the process with that id shares it (and its loaded weights).
* ``openai``, ``deepseek``, ``gemini``, ``openai_compatible``: ``ChatOpenAI`` with the provider's
  key and base URL from :mod:`.catalog`.
* ``anthropic``: ``ChatAnthropic``.

Keys come from the environment (or a git-ignored ``.env``, loaded by ``eh.setup``) and are never
printed. The local model's limits shape agent design: with ``tool_choice="auto"`` the 135M model
rarely calls a tool (``../shared/OFFLINE.md``), so agents on it route with a required or named tool
choice or a structured answer whose fields are enums. Taught in ``notebooks/agent/01_graph.ipynb``.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from .catalog import default_model, provider_info, resolve_provider
from .errors import MissingKeyError

_lock = threading.Lock()
_servers: dict[str, Any] = {}


def local_server(model: str | None = None):
    """The process's shared loopback server for a local model id (default: the base model),
    started on first call; each id is different weights, so each gets its own server."""
    from .catalog import model_info

    model = model or default_model("local")
    model_info("local", model)  # an unknown id fails here, not as a 404 in the middle of an agent run
    with _lock:
        if model not in _servers:
            from .local_provider import LocalProvider
            from .server import LocalServer

            _servers[model] = server = LocalServer(LocalProvider(model)).start()
            atexit.register(server.stop)
        return _servers[model]


def chat_model(provider: str | None = None, model: str | None = None, *, temperature: float = 0.0,
               max_tokens: int = 256, timeout: float = 120.0, **kwargs: Any):
    """A LangChain chat model for ``provider`` (default: :func:`~.catalog.resolve_provider`).

    ``max_tokens`` is bounded on purpose: an unbounded structured answer from a small model can run
    to the context limit. Extra keyword arguments go to the LangChain class.
    """
    name = resolve_provider(provider)
    info = provider_info(name)
    model = model or default_model(name)
    if info.kind == "local":
        from langchain_openai import ChatOpenAI

        server = local_server(model)
        # The loopback server needs no key; the SDK insists on a non-empty one.
        return ChatOpenAI(base_url=server.base_url, api_key="local", model=server.model_id,
                          temperature=temperature, max_tokens=max_tokens, timeout=timeout, max_retries=0,
                          **kwargs)
    key = os.environ.get(info.key_variable) if info.key_variable else None
    if info.key_variable and not key:
        raise MissingKeyError(name, info.key_variable)
    if info.kind == "anthropic":
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model=model, api_key=key, temperature=temperature, max_tokens=max_tokens,
                             timeout=timeout, **kwargs)
    from langchain_openai import ChatOpenAI

    base_url = os.environ.get(info.env_base_url) if info.env_base_url else info.base_url
    return ChatOpenAI(model=model, api_key=key or "none", base_url=base_url, temperature=temperature,
                      max_tokens=max_tokens, timeout=timeout, **kwargs)


__all__ = ["chat_model", "local_server"]
