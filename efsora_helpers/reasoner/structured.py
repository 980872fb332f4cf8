"""The reasoner's answer shapes: pydantic models for a scene's answers and violations, and a
schema narrowed to one scene's workers.

Parsing, validation and the one repair round are generic and live in
:mod:`efsora_helpers.llm.structured` (re-exported here so older imports keep working). Taught in
``notebooks/reasoner/04_structured.ipynb``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..llm.structured import (  # noqa: F401 - re-exported: the generic half moved to efsora_helpers.llm
    StructuredResult,
    T,
    extract_json,
    parse_as,
    repair_prompt,
    schema_of,
    structured_chat,
)
from ..vocabulary import RULES

Rule = Literal[RULES]  # the plain strings, in the vocabulary's order: the JSON Schema is unchanged
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

