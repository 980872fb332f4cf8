"""An OpenAI-compatible HTTP server on loopback, backed by any provider (by default the local model).

It speaks the Chat Completions protocol (``POST /v1/chat/completions`` with ``tools``,
``response_format`` and ``stream``; ``GET /v1/models``), so the official ``openai`` SDK, or any
OpenAI client, can drive the local model exactly as it drives a hosted one. This is what Ollama,
vLLM and llama.cpp's server do. Taught in ``notebooks/reasoner/01_client.ipynb``.

    with LocalServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed")
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request  # module level: FastAPI resolves annotations here
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .base import Provider
from .errors import ContextWindowError, LLMError
from .openai_compat import message_from_openai, tool_calls_to_openai, usage_to_openai
from .types import ChatRequest, ChatResponse, ToolSpec

LOOPBACK = "127.0.0.1"


def request_from_openai(body: dict[str, Any], default_model: str) -> ChatRequest:
    """An OpenAI request body as our ``ChatRequest`` (the inverse of ``request_to_openai``)."""
    tools = [ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                      parameters=t["function"].get("parameters") or {"type": "object", "properties": {}})
             for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
    fmt = body.get("response_format") or {}
    schema = fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None
    stop = body.get("stop") or []
    return ChatRequest(
        model=body.get("model") or default_model,
        messages=[message_from_openai(m) for m in body["messages"]],
        tools=tools, tool_choice=choice if tools else "auto",
        response_schema=schema, json_mode=fmt.get("type") == "json_object",
        schema_name=fmt.get("json_schema", {}).get("name", "response"),
        temperature=1.0 if body.get("temperature") is None else body["temperature"],
        top_p=body.get("top_p") or 1.0,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 256,
        seed=body.get("seed"), stop=[stop] if isinstance(stop, str) else stop,
    )


def response_to_openai(response: ChatResponse, completion_id: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": response.model,
        "choices": [{"index": 0, "finish_reason": response.finish_reason, "message": {
            "role": "assistant", "content": response.text or (None if response.tool_calls else ""),
            "tool_calls": tool_calls_to_openai(response.tool_calls) or None}}],
        "usage": usage_to_openai(response.usage),
    }


def create_app(provider: Provider, model_id: str):
    """The FastAPI app. Errors come back in OpenAI's error shape with a fitting status code."""
    app = FastAPI(title="efsora OpenAI-compatible server")

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": None}})

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "efsora"}]}

    @app.post("/v1/chat/completions")
    async def chat(req: Request):
        try:
            body = await req.json()
            request = request_from_openai(body, model_id)
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f"invalid request: {exc}", "invalid_request_error")
        if request.model != model_id:
            return error(404, f"model {request.model!r} not found; this server serves {model_id!r}",
                         "invalid_request_error")
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.get("stream"):
            try:
                # The model is CPU-bound: run it in a worker thread so the event loop stays responsive.
                response = await run_in_threadpool(provider.complete, request)
            except ContextWindowError as exc:
                return error(400, str(exc), "context_length_exceeded")
            except LLMError as exc:
                return error(500, str(exc), "server_error")
            return response_to_openai(response, completion_id, created)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_sse(provider, request, completion_id, created, include_usage),
                                 media_type="text/event-stream")

    return app


def _sse(provider: Provider, request: ChatRequest, completion_id: str, created: int, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: role, content deltas, tool calls, finish, usage."""

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
        data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": request.model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for event in provider.stream(request):
        if event.type == "text":
            yield chunk({"content": event.text})
            continue
        response = event.response
        assert response is not None
        calls = tool_calls_to_openai(response.tool_calls)
        if calls:
            yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        yield chunk({}, finish=response.finish_reason)
        if include_usage:
            yield chunk({}, usage=usage_to_openai(response.usage), choices=False)
    yield "data: [DONE]\n\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class LocalServer:
    """Runs the app with uvicorn in a background thread on 127.0.0.1; a context manager."""

    def __init__(self, provider: Provider | None = None, model_id: str | None = None, port: int = 0):
        if provider is None:
            from .local_provider import LocalProvider

            provider = LocalProvider()
        self.provider = provider
        self.model_id = model_id or getattr(provider, "model_id", "local")
        self.port = port or free_port()
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def start(self, timeout_s: float = 20.0) -> "LocalServer":
        import uvicorn

        config = uvicorn.Config(create_app(self.provider, self.model_id), host=LOOPBACK, port=self.port,
                                log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="efsora-llm-server")
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {LOOPBACK}:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
