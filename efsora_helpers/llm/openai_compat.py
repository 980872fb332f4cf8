"""Adapter for OpenAI's Chat Completions API and every server that speaks it: OpenAI, DeepSeek,
Gemini's OpenAI-compatible endpoint, Ollama, vLLM, llama.cpp and the book's loopback server.

The conversion functions are pure (messages in, wire dicts out, and back) so unit tests and the
loopback server reuse them. Taught in ``notebooks/reasoner/01_client.ipynb`` and ``03_tools``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from . import errors
from .base import Provider
from .types import ChatRequest, ChatResponse, Message, StreamEvent, ToolCall, ToolSpec, Usage, schema_instruction


# ---- our types -> OpenAI wire format ------------------------------------------------------------
def message_to_openai(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if m.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": m.content or None}
        if m.tool_calls:
            out["tool_calls"] = tool_calls_to_openai(m.tool_calls)
        return out
    if m.images:  # a list of parts: text, then each image as a data URL
        parts: list[dict] = [{"type": "text", "text": m.content}]
        parts += [{"type": "image_url", "image_url": {"url": i.data_url}} for i in m.images]
        return {"role": m.role, "content": parts}
    return {"role": m.role, "content": m.content}  # the system prompt is just the first message


def tool_calls_to_openai(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls]


def usage_to_openai(u: Usage) -> dict[str, int]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total_tokens}


def tool_to_openai(t: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}


def tool_choice_to_openai(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def request_to_openai(request: ChatRequest, json_mode_kind: str = "json_schema") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [message_to_openai(m) for m in request.messages],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = request.stop
    if request.tools:
        body["tools"] = [tool_to_openai(t) for t in request.tools]
        body["tool_choice"] = tool_choice_to_openai(request.tool_choice)
    if request.response_schema is not None:
        if json_mode_kind == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema_name, "schema": request.response_schema}}
        else:  # DeepSeek: JSON mode only; the schema goes into the prompt instead
            body["response_format"] = {"type": "json_object"}
            body["messages"] = body["messages"] + [
                {"role": "system", "content": schema_instruction(request.response_schema)}]
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


# ---- OpenAI wire format -> our types ------------------------------------------------------------
def parse_arguments(raw: str | None) -> tuple[dict, str | None]:
    """``(arguments, None)`` when the model's argument text is a JSON object, else ``({}, raw)``."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}, raw
    return (value, None) if isinstance(value, dict) else ({}, raw)


def tool_call_from_openai(c: dict[str, Any]) -> ToolCall:
    arguments, invalid = parse_arguments(c["function"].get("arguments"))
    return ToolCall(id=c["id"], name=c["function"]["name"], arguments=arguments, invalid_arguments=invalid)


def message_from_openai(d: dict[str, Any]) -> Message:
    role = d["role"]
    if role == "tool":
        return Message(role="tool", content=_text_of(d.get("content")), tool_call_id=d.get("tool_call_id"))
    if role == "assistant":
        return Message(role="assistant", content=_text_of(d.get("content")),
                       tool_calls=[tool_call_from_openai(c) for c in d.get("tool_calls") or []])
    if role == "developer":  # OpenAI's newer name for the system role
        role = "system"
    content = d.get("content")
    images = []
    if isinstance(content, list):
        from .types import ImageInput

        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                if url.startswith("data:") and ";base64," in url:
                    head, data = url[5:].split(";base64,", 1)
                    images.append(ImageInput(media_type=head, data_base64=data))
    return Message(role=role, content=_text_of(content), images=images)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def usage_from_openai(u: Any) -> Usage:
    if u is None:
        return Usage()
    u = u if isinstance(u, dict) else u.model_dump()
    details = u.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0  # DeepSeek's name
    return Usage(input_tokens=u.get("prompt_tokens") or 0, output_tokens=u.get("completion_tokens") or 0,
                 cached_input_tokens=cached)


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return {"length": "length", "tool_calls": "tool_calls"}.get(reason or "stop", "stop")


# ---- errors ---------------------------------------------------------------------------------------
def translate_error(exc: Exception, provider: str, model: str) -> Exception:
    import openai

    return errors.translate_sdk_error(exc, openai, provider, model)


class OpenAICompatibleProvider(Provider):
    """One adapter for all OpenAI-compatible APIs; ``json_mode_kind`` says what JSON they accept."""

    def __init__(self, name: str, api_key: str | None, base_url: str | None = None,
                 json_mode_kind: str = "json_schema", timeout: float = 60.0):
        import openai

        self.name = name
        self.json_mode_kind = json_mode_kind
        # Retries are ours (client.py), visible and counted; the SDK's own are switched off.
        self.client = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url,
                                    timeout=timeout, max_retries=0)

    def complete(self, request: ChatRequest) -> ChatResponse:
        body = request_to_openai(request, self.json_mode_kind)
        t0 = time.perf_counter()
        try:
            raw = self.client.chat.completions.create(**body)
        except Exception as exc:  # noqa: BLE001 - translated, then re-raised
            raise translate_error(exc, self.name, request.model) from exc
        choice = raw.choices[0]
        calls = [tool_call_from_openai(c.model_dump()) for c in choice.message.tool_calls or []]
        return ChatResponse(
            provider=self.name, model=raw.model or request.model, text=choice.message.content or "",
            tool_calls=calls, usage=usage_from_openai(raw.usage),
            finish_reason=_finish(choice.finish_reason, bool(calls)), latency_s=time.perf_counter() - t0,
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        body = request_to_openai(request, self.json_mode_kind)
        body.update(stream=True, stream_options={"include_usage": True})
        t0 = time.perf_counter()
        text, first, usage, reason, model = "", None, Usage(), None, request.model
        partial_calls: dict[int, dict] = {}  # tool calls arrive in fragments, keyed by index
        try:
            for chunk in self.client.chat.completions.create(**body):
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = usage_from_openai(chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                reason = choice.finish_reason or reason
                delta = choice.delta
                if delta.content:
                    if first is None:
                        first = time.perf_counter() - t0
                    text += delta.content
                    yield StreamEvent(type="text", text=delta.content)
                for tc in delta.tool_calls or []:
                    slot = partial_calls.setdefault(tc.index, {"id": "", "function": {"name": "", "arguments": ""}})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["function"]["name"] += tc.function.name or ""
                        slot["function"]["arguments"] += tc.function.arguments or ""
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, self.name, request.model) from exc
        calls = [tool_call_from_openai(partial_calls[i]) for i in sorted(partial_calls)]
        yield StreamEvent(type="done", response=ChatResponse(
            provider=self.name, model=model, text=text, tool_calls=calls, usage=usage,
            finish_reason=_finish(reason, bool(calls)), latency_s=time.perf_counter() - t0, first_token_s=first,
        ))
