"""A typed tool registry and the tool loop.

A tool is a plain Python function with type hints and a docstring. The registry turns its
signature into a JSON Schema (via a pydantic model built from the parameters), validates the
model's arguments against it, and turns every failure (unknown tool, a tool outside the allow-list,
bad arguments, an exception) into an error *result* the model can read and act on, instead of a
crash. The loop runs model -> tool -> model until the model answers or the step limit is reached.
Taught in ``notebooks/reasoner/03_tools.ipynb``.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import Field, ValidationError, create_model

from ..llm.types import ChatResponse, Message, ToolCall, ToolSpec, tool_result


@dataclass
class Tool:
    name: str
    function: Callable[..., Any]
    spec: ToolSpec
    arguments_model: type


def _docstring_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """The summary paragraph and the ``Args:`` descriptions of a Google-style docstring."""
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    section = re.search(r"^Args:\n(.*?)(?:\n\S|\Z)", doc, re.S | re.M)
    if section:
        current = None
        for line in section.group(1).splitlines():
            m = re.match(r"\s{2,}(\w+)(?: \(.*?\))?:\s*(.*)", line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _clean(schema: dict, names: bool = False) -> dict:
    """Drop pydantic's ``title`` keys: noise to a model, and tokens to pay for. Under
    ``properties`` the keys are parameter names, so a parameter called ``title`` stays."""
    if isinstance(schema, dict):
        return {k: _clean(v, names=k == "properties") for k, v in schema.items() if names or k != "title"}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def spec_from_function(fn: Callable, name: str | None = None) -> tuple[ToolSpec, type]:
    """A ``ToolSpec`` and an arguments model from a typed function."""
    summary, arg_docs = _docstring_parts(fn)
    if not summary:
        raise ValueError(f"tool {fn.__name__} needs a docstring: it is the description the model reads")
    # Resolves string annotations (from __future__ import annotations) and keeps Annotated bounds.
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name!r} needs a type hint")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=arg_docs.get(p.name)))
    model = create_model(f"{fn.__name__}_arguments", __config__={"extra": "forbid"}, **fields)
    schema = _clean(model.model_json_schema())
    return ToolSpec(name=name or fn.__name__, description=summary, parameters=schema), model


class ToolRegistry:
    def __init__(self):
        self.tools: dict[str, Tool] = {}

    def tool(self, fn: Callable | None = None, *, name: str | None = None):
        """Decorator: ``@registry.tool`` registers a typed function as a tool."""

        def register(f: Callable) -> Callable:
            spec, model = spec_from_function(f, name)
            self.tools[spec.name] = Tool(spec.name, f, spec, model)
            return f

        return register(fn) if fn is not None else register

    def specs(self, allowed: list[str] | None = None) -> list[ToolSpec]:
        return [t.spec for n, t in self.tools.items() if allowed is None or n in allowed]

    def call(self, call: ToolCall, allowed: list[str] | None = None) -> tuple[Any, bool]:
        """``(result, is_error)``. Never raises for a model's mistake: the error is the result."""
        if call.name not in self.tools:
            return f"unknown tool {call.name!r}; available: {', '.join(self.tools)}", True
        if allowed is not None and call.name not in allowed:
            return f"tool {call.name!r} is not allowed for this request; allowed: {', '.join(allowed)}", True
        if call.invalid_arguments is not None:
            return f"arguments are not a JSON object: {call.invalid_arguments[:200]}", True
        tool = self.tools[call.name]
        try:
            args = tool.arguments_model.model_validate(call.arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            return f"invalid arguments for {call.name}: {problems}", True
        try:
            return tool.function(**dict(args)), False
        except Exception as exc:  # noqa: BLE001 - the model reads the error and may retry
            return f"{call.name} failed: {type(exc).__name__}: {exc}", True


@dataclass
class ToolStep:
    call: ToolCall
    result: Any
    is_error: bool


@dataclass
class ToolLoopResult:
    answer: str
    steps: list[ToolStep] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    responses: list[ChatResponse] = field(default_factory=list)
    stopped_by_limit: bool = False


def run_tool_loop(client, messages: list[Message], registry: ToolRegistry, max_steps: int = 4,
                  allowed: list[str] | None = None, first_choice: str = "required",
                  final_schema: dict | None = None, **options: Any) -> ToolLoopResult:
    """Model -> tools -> model until an answer (ReAct without the free-text "Thought").

    ``first_choice`` is the first turn's ``tool_choice``: ``required`` makes a small model look the
    facts up before answering; later turns use ``auto``. After ``max_steps`` tool rounds the model
    must answer without tools. ``allowed`` restricts which tools this request may use.
    ``final_schema``: once the model stops calling tools, its answer must match this JSON Schema.
    """
    options.setdefault("max_tokens", 200)
    history = list(messages)
    out = ToolLoopResult(answer="", messages=history)
    specs = registry.specs(allowed)
    for step in range(max_steps + 1):
        last = step == max_steps
        choice = "none" if last or not specs else (first_choice if step == 0 else "auto")
        shape = {"response_schema": final_schema} if choice == "none" and final_schema is not None else {}
        reply = client.chat(history, tools=specs, tool_choice=choice, **shape, **options)
        if not reply.tool_calls and final_schema is not None and not shape:
            # The model is done with tools: ask for the answer in the final shape.
            reply = client.chat(history, tools=specs, tool_choice="none", response_schema=final_schema, **options)
        out.responses.append(reply)
        history.append(reply.message())
        if not reply.tool_calls:
            out.answer = reply.text
            out.stopped_by_limit = last and step > 0
            return out
        for call in reply.tool_calls:
            result, is_error = registry.call(call, allowed)
            out.steps.append(ToolStep(call, result, is_error))
            history.append(tool_result(call, result if isinstance(result, str) else json.dumps(result), is_error))
    return out
