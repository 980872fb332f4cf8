"""Structured answers: pydantic models, parsing with validation, and one repair attempt.

With the local provider the JSON Schema of the model constrains decoding, so the output always
validates (within ``max_tokens``). Hosted providers get the schema as ``response_format`` (OpenAI,
Gemini), as JSON mode plus the schema in the prompt (DeepSeek) or as a forced tool (Anthropic);
whatever comes back is validated here and, when it fails, sent back once with the validation error
for the model to fix. Taught in ``notebooks/reasoner/04_structured.ipynb``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..llm.types import ChatResponse, Message, assistant, user

T = TypeVar("T", bound=BaseModel)

Rule = Literal["no_hard_hat", "no_vest", "in_forklift_zone", "other"]
Severity = Literal["low", "medium", "high"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SafetyViolation(_Answer):
    """One rule broken by one worker (``worker_id`` is the object id in the CV JSON)."""

    worker_id: int | None = Field(description="object id of the worker, null if not tied to one")
    rule: Rule
    severity: Severity
    description: str = Field(max_length=80)


class SceneAnalysis(_Answer):
    """The ``safety`` mode's answer: the scene in numbers plus a list of violations."""

    summary: str = Field(max_length=120)
    worker_count: int = Field(ge=0, le=999)
    violations: list[SafetyViolation] = Field(max_length=6)
    risk_level: Severity


class ReasoningResponse(_Answer):
    """The ``standard`` mode's answer. ``reasoning`` comes first on purpose: a model writes fields in
    schema order, so the reasoning is produced before, and can inform, the answer (chain of thought
    inside JSON). ``number`` carries a count when the question asks for one."""

    reasoning: str = Field(max_length=200)
    answer: str = Field(max_length=120)
    number: int | None = Field(ge=0, le=999, description="the count asked for, if the question asks for a number")
    evidence: list[Annotated[int, Field(ge=0, le=999)]] = Field(default_factory=list, max_length=4,
                                                                 description="ids of the objects the answer relies on")


class DirectResponse(_Answer):
    """``ReasoningResponse`` without the reasoning field: the ``direct`` strategy's shape."""

    answer: str = Field(max_length=120)
    number: int | None = Field(ge=0, le=999, description="the count asked for, if the question asks for a number")
    evidence: list[Annotated[int, Field(ge=0, le=999)]] = Field(default_factory=list, max_length=4)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema sent to providers and compiled into a grammar for the local model."""
    return model.model_json_schema()


def grounded_analysis_schema(worker_ids: list[int]) -> dict[str, Any]:
    """``SceneAnalysis``'s schema narrowed to one scene: worker ids limited to the workers present,
    the worker count to their number. Under constrained decoding the model cannot name a worker who
    does not exist; a hosted model gets the same schema and the same check afterwards."""
    import copy

    schema = copy.deepcopy(schema_of(SceneAnalysis))
    schema["properties"]["worker_count"].update({"minimum": len(worker_ids), "maximum": len(worker_ids)})
    violation = schema["$defs"]["SafetyViolation"]["properties"]["worker_id"]
    violation.clear()
    violation.update({"anyOf": [{"enum": sorted(worker_ids)}, {"type": "null"}],
                      "description": "object id of the worker, null if not tied to one"})
    return schema


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

    ``schema`` overrides the model's own JSON Schema, e.g. a narrower one from
    :func:`grounded_analysis_schema`; the reply is still validated against ``model``.
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
