"""Adapter for Anthropic's Messages API, through the official ``anthropic`` SDK.

What differs from OpenAI, and is converted here:
- the system prompt is a top-level ``system`` field, not a message;
- an assistant's tool calls are ``tool_use`` content blocks with ``input`` as a JSON object;
- tool results go back inside a *user* message as ``tool_result`` blocks (several results of one
  turn share one user message);
- images are ``image`` blocks with a base64 ``source``;
- ``max_tokens`` is required; sampling parameters are deprecated (see ``SAMPLING_MODELS``); usage reports cache reads and writes separately from ``input_tokens``;
- there is no JSON mode here: a schema-shaped answer is a forced call to a tool whose
  ``input_schema`` is the schema, the documented way to get JSON out of Claude.
Taught in ``notebooks/reasoner/01_client.ipynb`` and ``03_tools.ipynb``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from . import errors
from .base import Provider
from .types import ChatRequest, ChatResponse, Message, StreamEvent, ToolCall, ToolSpec, Usage

# Anthropic deprecated the sampling parameters: models after Opus 4.6 reject temperature/top_p with
# HTTP 400, and the SDK (1.0+) no longer takes them as arguments. Older models still accept them,
# so they go in ``extra_body`` for these models only; the rest are steered by the prompt.
SAMPLING_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-6", "claude-opus-4-5", "claude-opus-4-6")

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def messages_to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """``(system, messages)`` in Anthropic's format."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            if m.is_error:
                block["is_error"] = True
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) and all(
                    b.get("type") == "tool_result" for b in out[-1]["content"]):
                out[-1]["content"].append(block)  # results of parallel calls share one turn
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if m.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
            out.append({"role": "assistant", "content": blocks if m.tool_calls else m.content})
            continue
        if m.images:
            blocks = [{"type": "image", "source": {"type": "base64", "media_type": i.media_type, "data": i.data_base64}}
                      for i in m.images]
            blocks.append({"type": "text", "text": m.content})
            out.append({"role": "user", "content": blocks})
        else:
            out.append({"role": "user", "content": m.content})
    return system, out


def tool_to_anthropic(t: ToolSpec) -> dict[str, Any]:
    return {"name": t.name, "description": t.description, "input_schema": t.parameters}


def tool_choice_to_anthropic(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": choice}


def request_to_anthropic(request: ChatRequest) -> dict[str, Any]:
    system, messages = messages_to_anthropic(request.messages)
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "messages": messages}
    if system:
        body["system"] = system
    if request.model.startswith(SAMPLING_MODELS):
        # Even these reject temperature and top_p together: send one.
        body["extra_body"] = {"top_p": request.top_p} if request.top_p < 1.0 else {"temperature": request.temperature}
    if request.stop:
        body["stop_sequences"] = request.stop
    tools = [tool_to_anthropic(t) for t in request.tools]
    if request.response_schema is not None:
        tools.append({"name": request.schema_name, "description": "Reply with the answer in this exact structure.",
                      "input_schema": request.response_schema})
        body["tool_choice"] = {"type": "tool", "name": request.schema_name}
    elif request.tools:
        body["tool_choice"] = tool_choice_to_anthropic(request.tool_choice)
    if tools:
        body["tools"] = tools
    return body


def usage_from_anthropic(u: Any) -> Usage:
    u = u if isinstance(u, dict) else u.model_dump()
    read = u.get("cache_read_input_tokens") or 0
    write = u.get("cache_creation_input_tokens") or 0
    # Anthropic's input_tokens counts only the uncached part; ours counts the whole prompt.
    return Usage(input_tokens=(u.get("input_tokens") or 0) + read + write, output_tokens=u.get("output_tokens") or 0,
                 cached_input_tokens=read, cache_write_tokens=write)


def response_from_anthropic(msg: Any, request: ChatRequest, provider: str, latency_s: float,
                            first_token_s: float | None = None) -> ChatResponse:
    d = msg if isinstance(msg, dict) else msg.model_dump()
    text, calls = "", []
    for block in d["content"]:
        if block["type"] == "text":
            text += block["text"]
        elif block["type"] == "tool_use":
            if request.response_schema is not None and block["name"] == request.schema_name:
                text = json.dumps(block["input"])  # the forced "answer" tool carries the JSON
            else:
                calls.append(ToolCall(id=block["id"], name=block["name"], arguments=block["input"]))
    finish = STOP_REASONS.get(d.get("stop_reason") or "end_turn", "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"
    return ChatResponse(provider=provider, model=d.get("model") or request.model, text=text, tool_calls=calls,
                        usage=usage_from_anthropic(d["usage"]), finish_reason=finish, latency_s=latency_s,
                        first_token_s=first_token_s)


def translate_error(exc: Exception, provider: str, model: str) -> Exception:
    import anthropic

    return errors.translate_sdk_error(exc, anthropic, provider, model)


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 60.0, http_client: Any = None):
        import anthropic

        kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout, "max_retries": 0}
        if base_url:
            kwargs["base_url"] = base_url
        if http_client is not None:  # unit tests replay recordings through an httpx transport
            kwargs["http_client"] = http_client
        self.client = anthropic.Anthropic(**kwargs)

    def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        try:
            msg = self.client.messages.create(**request_to_anthropic(request))
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, self.name, request.model) from exc
        return response_from_anthropic(msg, request, self.name, time.perf_counter() - t0)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        t0 = time.perf_counter()
        first = None
        try:
            with self.client.messages.stream(**request_to_anthropic(request)) as s:
                for delta in s.text_stream:
                    if first is None:
                        first = time.perf_counter() - t0
                    yield StreamEvent(type="text", text=delta)
                final = s.get_final_message()
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, self.name, request.model) from exc
        yield StreamEvent(type="done", response=response_from_anthropic(
            final, request, self.name, time.perf_counter() - t0, first))
