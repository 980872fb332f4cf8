"""An OpenAI-compatible HTTP server on loopback, backed by any provider (by default the local model).

It speaks the Chat Completions protocol (``POST /v1/chat/completions`` with ``tools``,
``response_format`` and ``stream``; ``GET /v1/models``), so the official ``openai`` SDK, or any
OpenAI client, can drive the local model exactly as it drives a hosted one. This is what Ollama,
vLLM and llama.cpp's server do. Taught in ``notebooks/reasoner/01_client.ipynb``.

    with LocalServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed")

What it rejects, before the provider runs (``server_request.py`` holds the contract; the SDK raises
``openai.BadRequestError`` for each): a body that is not a JSON object; missing or empty
``messages``; a message with an unknown role, content of the wrong type or for its role, an image
URL that is not inline (``data:``; the server never fetches), a tool message without
``tool_call_id``; ``max_tokens``/``max_completion_tokens`` below 1 or not an integer; ``temperature``
outside [0, 2], ``top_p`` outside (0, 1] or either not a number; ``stop`` not a string or up to 4
strings; ``stream`` not a boolean; ``n`` other than 1; ``tools`` without a valid function name or
whose ``parameters`` is not an object schema; ``tool_choice`` naming a tool not offered; an unknown
``response_format`` type, a ``json_schema`` without its ``schema``, a schema that fails its
meta-schema or has a ``$ref`` that does not resolve within it (remote refs are refused, never
fetched); an unknown parameter (as OpenAI does). A prompt plus ``max_tokens`` over the context
window is refused by the provider (400 ``context_length_exceeded``), an unknown model gets 404.

Every error has OpenAI's shape ``{"error": {"message", "type", "code", "param"}}`` with a one-line
message that says what to fix. Validation errors are 400, like OpenAI, not FastAPI's default 422
``{"detail": [...]}``: clients written for OpenAI read the former. A failure inside the server is a
JSON 500 without a traceback (the traceback goes to the server's log); a stream whose provider fails
after it started ends with an ``{"error": ...}`` event, which the SDK raises as ``openai.APIError``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from typing import Any, Iterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from . import errors
from .base import Provider
from .openai_compat import message_from_openai, tool_calls_to_openai, usage_to_openai
from .server_request import ChatCompletionBody, NamedToolChoice, RequestError, check_request, error_from_validation
from .types import ChatRequest, ChatResponse, StreamEvent, ToolSpec

LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)


def request_from_body(body: ChatCompletionBody, default_model: str) -> ChatRequest:
    """A validated OpenAI request body as our ``ChatRequest`` (the inverse of ``request_to_openai``)."""
    tools = [ToolSpec(name=t.function.name, description=t.function.description or "",
                      parameters=t.function.parameters or {"type": "object", "properties": {}})
             for t in body.tools or []]
    choice = body.tool_choice or "auto"
    if isinstance(choice, NamedToolChoice):
        choice = choice.function.name
    fmt = body.response_format
    spec = fmt.json_schema if fmt is not None and fmt.type == "json_schema" else None
    stop = body.stop or []
    return ChatRequest(
        model=body.model or default_model,
        messages=[message_from_openai(m.model_dump(exclude_none=True)) for m in body.messages],
        tools=tools, tool_choice=choice if tools else "auto",
        response_schema=spec.schema_ if spec else None, json_mode=fmt is not None and fmt.type == "json_object",
        schema_name=spec.name if spec else "response",
        temperature=1.0 if body.temperature is None else body.temperature,  # OpenAI's defaults
        top_p=1.0 if body.top_p is None else body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens or 256,
        seed=body.seed, stop=[stop] if isinstance(stop, str) else stop,
    )


def response_to_openai(response: ChatResponse, completion_id: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": response.model,
        "choices": [{"index": 0, "finish_reason": response.finish_reason, "message": {
            "role": "assistant", "content": response.text or (None if response.tool_calls else ""),
            "tool_calls": tool_calls_to_openai(response.tool_calls) or None}}],
        "usage": usage_to_openai(response.usage),
    }


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape."""

    error: ErrorDetail


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    # One line: an engine's message can span several (llguidance prints the regex it could not parse).
    return {"error": {"message": " ".join(message.split()), "type": kind, "code": code, "param": param}}


def error_response(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                   param: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(message, kind, code, param))


def provider_error_response(exc: Exception) -> JSONResponse:
    """A provider's exception as the HTTP answer a caller can act on: the caller's fault is a 4xx."""
    if isinstance(exc, errors.ContextWindowError):
        return error_response(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, errors.InvalidRequestError):
        return error_response(400, str(exc))
    if isinstance(exc, errors.UnknownModelError):
        return error_response(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, errors.RateLimitError):
        return error_response(429, str(exc), "rate_limit_error")
    if isinstance(exc, errors.ProviderTimeoutError):
        return error_response(504, str(exc), "server_error")
    if isinstance(exc, errors.ProviderError) and exc.status is not None and 400 <= exc.status < 500:
        return error_response(400, str(exc))  # the upstream API refused what the caller sent
    if isinstance(exc, errors.LLMError):
        return error_response(502, str(exc), "server_error")  # upstream failed; the request was fine
    return internal_error(exc)


def internal_error(exc: BaseException) -> JSONResponse:
    # The traceback is for the server's operator (the log), never for the caller.
    log.error("unexpected error in the chat endpoint", exc_info=exc)
    return error_response(500, f"internal server error ({type(exc).__name__}); see the server log",
                          "server_error")


RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request cannot be served; the message says what to fix"},
    500: {"model": ErrorBody, "description": "A failure inside the server (no traceback in the body)"},
}


def create_app(provider: Provider, model_id: str):
    """The FastAPI app. Errors come back in OpenAI's error shape with a fitting status code."""
    app = FastAPI(title="efsora OpenAI-compatible server")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = error_from_validation(list(exc.errors()))
        return error_response(400, err.message, param=err.param)

    @app.exception_handler(RequestError)
    async def rejected(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(400, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(HTTPException)  # unknown route, wrong method: the same shape
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 400:  # FastAPI's body parser gave up (invalid JSON, or nested too deeply)
            message = "the request body could not be parsed as JSON; send a JSON object with model and messages"
        return JSONResponse(status_code=exc.status_code, headers=exc.headers,
                            content=error_body(message, "invalid_request_error"))

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc)

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "efsora"}]}

    @app.post("/v1/chat/completions", responses=RESPONSES)
    async def chat(body: ChatCompletionBody):
        check_request(body)
        if body.model is not None and body.model != model_id:
            return error_response(404, f"model {body.model!r} not found; this server serves {model_id!r}",
                                  code="model_not_found", param="model")
        request = request_from_body(body, model_id)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.stream:
            try:
                # The model is CPU-bound: run it in a worker thread so the event loop stays responsive.
                response = await run_in_threadpool(provider.complete, request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
                return provider_error_response(exc)
            return response_to_openai(response, completion_id, created)
        events = provider.stream(request)
        try:
            # The first event before the 200 goes out: a request the provider refuses at once
            # (context window, schema) still gets its 4xx status instead of an error inside a stream.
            first = await run_in_threadpool(next, events, None)
        except Exception as exc:  # noqa: BLE001
            return provider_error_response(exc)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_sse(first, events, request, completion_id, created, include_usage),
                                 media_type="text/event-stream")

    return app


def _sse(first: StreamEvent | None, events: Iterator[StreamEvent], request: ChatRequest, completion_id: str,
         created: int, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: role, content deltas, tool calls, finish, usage."""

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
        data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": request.model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n"

    def all_events() -> Iterator[StreamEvent]:
        if first is not None:
            yield first
        yield from events

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in all_events():
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
    except Exception as exc:  # noqa: BLE001 - the status line is sent: report in the stream, as OpenAI does
        answer = provider_error_response(exc)
        yield f"data: {answer.body.decode()}\n\n"
        return
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
