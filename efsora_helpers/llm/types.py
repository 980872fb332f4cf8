"""Provider-neutral chat types: one message format, one tool-call format, one response.

Each provider adapter converts these to its wire format and back (``openai_compat.py``,
``anthropic_provider.py``, ``local_provider.py``). Taught in ``notebooks/reasoner/01_client.ipynb`` and
``03_tools.ipynb``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]


class ImageInput(BaseModel):
    """An image for a multimodal model, kept as base64 so a message is plain JSON."""

    media_type: str = "image/jpeg"
    data_base64: str = Field(repr=False)

    @classmethod
    def from_path(cls, path: str | Path) -> "ImageInput":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        media_type = mimetypes.guess_type(path.name)[0] or "image/jpeg"
        return cls(media_type=media_type, data_base64=base64.b64encode(path.read_bytes()).decode("ascii"))

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data_base64}"


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    # The model's raw argument text when it was not a JSON object; the registry reports it back.
    invalid_arguments: str | None = None


class Message(BaseModel):
    role: Role
    content: str = ""
    images: list[ImageInput] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None  # role="tool": which call this answers
    name: str | None = None  # role="tool": the tool's name
    is_error: bool = False  # role="tool": the tool failed and content says why


def system(text: str) -> Message:
    return Message(role="system", content=text)


def user(text: str, images: list[str | Path | ImageInput] | None = None) -> Message:
    imgs = [i if isinstance(i, ImageInput) else ImageInput.from_path(i) for i in images or []]
    return Message(role="user", content=text, images=imgs)


def assistant(text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
    return Message(role="assistant", content=text, tool_calls=tool_calls or [])


def tool_result(call: ToolCall, content: Any, is_error: bool = False) -> Message:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return Message(role="tool", content=text, tool_call_id=call.id, name=call.name, is_error=is_error)


def schema_instruction(schema: dict[str, Any]) -> str:
    """What a model is told when the API cannot enforce a schema itself (JSON mode, a local model)."""
    return "Reply with one JSON object that validates against this JSON Schema:\n" + json.dumps(schema)


class ToolSpec(BaseModel):
    """A tool as every provider needs it: a name, a description and a JSON Schema for arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # read from the provider's prompt cache (billed at a discount)
    cache_write_tokens: int = 0  # Anthropic: written to the cache (billed at a premium)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatRequest(BaseModel):
    """Everything one call needs. ``response_schema`` asks for JSON that validates against it."""

    model: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a tool name
    response_schema: dict[str, Any] | None = None
    json_mode: bool = False  # any JSON object, no schema ("JSON mode")
    schema_name: str = "response"
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)

    def cache_key(self, provider: str) -> str:
        import hashlib

        blob = json.dumps({"provider": provider, **self.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


class ChatResponse(BaseModel):
    provider: str
    model: str
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None  # None: the model has no price in the table (e.g. a custom server)
    finish_reason: str = "stop"  # "stop" | "length" | "tool_calls"
    latency_s: float = 0.0
    first_token_s: float | None = None  # streaming only: time to the first text token
    cached: bool = False  # served from the book's response cache, not the provider
    attempts: int = 1  # 1 + retries

    def message(self) -> Message:
        """The assistant turn to append to the history."""
        return assistant(self.text, self.tool_calls)

    def as_json(self) -> Any:
        """The text parsed as JSON (raises ``json.JSONDecodeError`` when it is not)."""
        return json.loads(self.text)


class StreamEvent(BaseModel):
    """One streaming event: a text delta, then one ``done`` event carrying the full response."""

    type: Literal["text", "done"]
    text: str = ""
    response: ChatResponse | None = None
