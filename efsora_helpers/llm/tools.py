"""A typed tool registry and the tool loop: the book's one way to give a model tools.

A tool is a plain Python function with type hints and a docstring. The registry turns its
signature into a JSON Schema (via a pydantic model built from the parameters), validates the
model's arguments against it, and turns every failure (unknown tool, a tool outside the allow-list,
bad arguments, an exception) into an error *result* the model can read and act on, instead of a
crash. The loop runs model -> tool -> model until the model answers or the step limit is reached.
Taught in ``notebooks/reasoner/03_tools.ipynb``; chapter 2's warehouse tools
(``efsora_helpers.reasoner.scene_tools``) are one registry of them.

Everything a framework needs comes from this one place, so chapter 3 adapts the registry instead
of describing the tools again. A LangChain ``StructuredTool``, for example, takes ``tool.name``,
``tool.description`` and ``tool.arguments_model`` (a pydantic model) as its ``args_schema``, and
its function is ``lambda **kw: registry.call(name, arguments=kw).content``. ``tool.side_effects``
marks the tools an agent must not call without a person's approval.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from pydantic import BaseModel, Field, ValidationError, create_model

from .types import ChatResponse, Message, ToolCall, ToolSpec, tool_result


@dataclass
class Tool:
    name: str
    function: Callable[..., Any]
    spec: ToolSpec
    arguments_model: type[BaseModel]
    # Changes something outside the conversation (writes a file, sends a message, stops a machine):
    # an agent asks a person before calling it. Reading facts, even into the session, is not one.
    side_effects: bool = False

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec.parameters


class ToolResult(NamedTuple):
    """What a call returned, or why it failed (``is_error``); unpacks as ``(value, is_error)``."""

    value: Any
    is_error: bool

    @property
    def content(self) -> str:
        """The text a tool message carries back to the model."""
        return self.value if isinstance(self.value, str) else json.dumps(self.value)

    def __repr__(self) -> str:
        # Printed as the (value, is_error) pair it was before it had names: checked notebook
        # outputs show it.
        return repr(tuple(self))


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


def spec_from_function(fn: Callable, name: str | None = None) -> tuple[ToolSpec, type[BaseModel]]:
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

    def add(self, fn: Callable, *, name: str | None = None, side_effects: bool = False) -> Tool:
        """Register a typed function as a tool; its name and docstring are what the model reads."""
        spec, model = spec_from_function(fn, name)
        self.tools[spec.name] = Tool(spec.name, fn, spec, model, side_effects)
        return self.tools[spec.name]

    def tool(self, fn: Callable | None = None, *, name: str | None = None, side_effects: bool = False):
        """Decorator: ``@registry.tool`` (or ``@registry.tool(side_effects=True)``) registers a tool."""

        def register(f: Callable) -> Callable:
            self.add(f, name=name, side_effects=side_effects)
            return f

        return register(fn) if fn is not None else register

    def names(self, allowed: list[str] | None = None) -> list[str]:
        return [n for n in self.tools if allowed is None or n in allowed]

    def side_effect_tools(self) -> list[str]:
        """The tools that need a person's approval before an agent calls them."""
        return [n for n, t in self.tools.items() if t.side_effects]

    def specs(self, allowed: list[str] | None = None) -> list[ToolSpec]:
        return [self.tools[n].spec for n in self.names(allowed)]

    def openai_tools(self, allowed: list[str] | None = None) -> list[dict[str, Any]]:
        """The tools in the OpenAI Chat Completions wire format (``tools=[...]``)."""
        from .openai_compat import tool_to_openai

        return [tool_to_openai(s) for s in self.specs(allowed)]

    def anthropic_tools(self, allowed: list[str] | None = None) -> list[dict[str, Any]]:
        """The tools in the Anthropic Messages wire format (``tools=[...]``)."""
        from .anthropic_provider import tool_to_anthropic

        return [tool_to_anthropic(s) for s in self.specs(allowed)]

    def call(self, call: ToolCall | str, allowed: list[str] | None = None, *,
             arguments: dict[str, Any] | None = None) -> ToolResult:
        """Run one call: a ``ToolCall`` from a model, or a tool's name with ``arguments=``.

        Returns ``(value, is_error)``. Never raises for a model's mistake: the error is the result.
        """
        if isinstance(call, str):
            call = ToolCall(id="direct", name=call, arguments=arguments or {})
        if call.name not in self.tools:
            return ToolResult(f"unknown tool {call.name!r}; available: {', '.join(self.tools)}", True)
        if allowed is not None and call.name not in allowed:
            return ToolResult(f"tool {call.name!r} is not allowed for this request; allowed: {', '.join(allowed)}",
                              True)
        if call.invalid_arguments is not None:
            return ToolResult(f"arguments are not a JSON object: {call.invalid_arguments[:200]}", True)
        tool = self.tools[call.name]
        try:
            args = tool.arguments_model.model_validate(call.arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            return ToolResult(f"invalid arguments for {call.name}: {problems}", True)
        try:
            return ToolResult(tool.function(**dict(args)), False)
        except Exception as exc:  # noqa: BLE001 - the model reads the error and may retry
            return ToolResult(f"{call.name} failed: {type(exc).__name__}: {exc}", True)


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

    @property
    def tool_rounds(self) -> int:
        """Model turns that asked for tools (each may ask for several)."""
        return sum(1 for r in self.responses if r.tool_calls)


def run_tool_loop(client, messages: list[Message], registry: ToolRegistry, max_steps: int = 4,
                  allowed: list[str] | None = None, first_choice: str = "required",
                  final_schema: dict | None = None, approve: Callable[[ToolCall], bool] | None = None,
                  **options: Any) -> ToolLoopResult:
    """Model -> tools -> model until an answer (ReAct without the free-text "Thought").

    ``first_choice`` is the first turn's ``tool_choice``: ``required`` makes a small model look the
    facts up before answering; later turns use ``auto``. After ``max_steps`` tool rounds the model
    must answer without tools. ``allowed`` restricts which tools this request may use.
    ``final_schema``: once the model stops calling tools, its answer must match this JSON Schema.
    ``approve``: asked before every call of a tool with side effects; a refusal is the tool's
    result, so the model learns the action was not taken. Without it such tools are refused.
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
            tool = registry.tools.get(call.name)
            needs_approval = tool is not None and tool.side_effects and (allowed is None or call.name in allowed)
            if needs_approval and (approve is None or not approve(call)):
                result = ToolResult(f"{call.name} was not approved by the user; the action was not taken", True)
            else:
                result = registry.call(call, allowed)
            out.steps.append(ToolStep(call, result.value, result.is_error))
            history.append(tool_result(call, result.content, result.is_error))
    return out
