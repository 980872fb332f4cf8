"""Structured answers: a pydantic model as the answer's shape, parsing with validation, one repair.

With the local provider the JSON Schema of the model constrains decoding, so the output always
validates (within ``max_tokens``). Hosted providers get the schema as ``response_format`` (OpenAI,
Gemini), as JSON mode plus the schema in the prompt (DeepSeek) or as a forced tool (Anthropic);
whatever comes back is validated here and, when it fails, sent back once with the validation error
for the model to fix. Taught in ``notebooks/reasoner/04_structured.ipynb``; chapter 2's answer
models (``efsora_helpers.reasoner.structured``) are the book's first use of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .types import ChatResponse, Message, assistant, user

T = TypeVar("T", bound=BaseModel)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema sent to providers and compiled into a grammar for the local model."""
    return model.model_json_schema()


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> str:
    """The JSON object inside a reply: strips Markdown fences and prose around the braces."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if start != -1 and end > start else text.strip()


def parse_as(model: type[T], text: str) -> tuple[T | None, str | None]:
    """``(value, None)`` when ``text`` holds a valid ``model``, else ``(None, error)``."""
    try:
        return model.model_validate_json(extract_json(text)), None
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:8]]
        return None, "; ".join(lines)


@dataclass
class StructuredResult:
    value: BaseModel | None
    attempts: list[ChatResponse] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def repaired(self) -> bool:
        return self.ok and len(self.attempts) > 1


def repair_prompt(bad_output: str, error: str, model: type[BaseModel]) -> Message:
    return user(
        "Your previous reply was not valid. Validation errors: " + error + "\n"
        "Reply again with only one JSON object that validates against this schema:\n"
        + json.dumps(schema_of(model)) + "\nYour previous reply was:\n" + bad_output[:2000]
    )


def structured_chat(client, messages: list[Message], model: type[T], repair: bool = True,
                    schema: dict | None = None, **options: Any) -> StructuredResult:
    """Ask for ``model``; validate; on failure send the error back once and validate again.

    ``schema`` overrides the model's own JSON Schema, e.g. one narrowed to the facts of a request
    (``reasoner.structured.grounded_analysis_schema``); the reply is still validated against ``model``.
    """
    options.setdefault("max_tokens", 320)
    result = StructuredResult(value=None)
    history = list(messages)
    for attempt in range(2 if repair else 1):
        reply = client.chat(history, response_schema=schema or schema_of(model), schema_name=model.__name__,
                            **options)
        result.attempts.append(reply)
        value, error = parse_as(model, reply.text)
        if value is not None:
            result.value = value
            return result
        if reply.finish_reason == "length":
            error = (error or "") + " (the reply was cut off at max_tokens)"
            options["max_tokens"] *= 2  # a cut-off reply cannot be repaired within the same budget
        result.errors.append(error or "no JSON object in the reply")
        history = [*history, assistant(reply.text), repair_prompt(reply.text, result.errors[-1], model)]
    return result
