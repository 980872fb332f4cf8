"""The generic LLM pieces in efsora_helpers.llm: the typed tool registry, the tool loop with a
scripted fake model, structured parsing and the one repair round. Fast: no model is loaded."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from efsora_helpers.llm import (
    ChatResponse,
    ToolCall,
    ToolRegistry,
    ToolResult,
    Usage,
    parse_as,
    run_tool_loop,
    structured_chat,
)
from efsora_helpers.llm.anthropic_provider import tool_to_anthropic
from efsora_helpers.llm.openai_compat import tool_to_openai


# ---- fakes (unit tests only) ------------------------------------------------------------------------
class FakeScriptedChat:
    """A fake client: ``chat`` replays scripted replies (text, or a list of ToolCalls) and records
    every request's history and options. Enough for the loop and the repair, which only call ``chat``."""

    def __init__(self, replies):
        self.replies, self.requests = list(replies), []

    def chat(self, messages, tools=None, **options):
        self.requests.append({"messages": list(messages), "tools": tools or [], **options})
        reply = self.replies.pop(0)
        calls = reply if isinstance(reply, list) else []
        return ChatResponse(provider="fake", model="fake", text="" if calls else reply, tool_calls=calls,
                            usage=Usage(input_tokens=10, output_tokens=5),
                            finish_reason="tool_calls" if calls else "stop")


def warehouse() -> tuple[ToolRegistry, list[str]]:
    registry, log = ToolRegistry(), []

    @registry.tool
    def count_workers(zone: Literal["dock", "aisle"], min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.5) -> dict:
        """Count the workers in one zone.

        Args:
            zone: where to count
            min_confidence: ignore detections below this
        """
        return {"zone": zone, "count": 3 if zone == "dock" else 0}

    @registry.tool(side_effects=True)
    def stop_line(reason: str) -> str:
        """Stop the forklift line.

        Args:
            reason: why, for the incident log
        """
        log.append(reason)
        return "line stopped"

    return registry, log


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(id=f"call_{name}", name=name, arguments=arguments)


# ---- the registry -----------------------------------------------------------------------------------
def test_names_descriptions_and_schemas_come_from_the_function():
    registry, _ = warehouse()
    tool = registry.tools["count_workers"]
    assert registry.names() == ["count_workers", "stop_line"]
    assert tool.description == "Count the workers in one zone."
    assert list(tool.parameters["properties"]) == list(tool.arguments_model.model_fields) == ["zone", "min_confidence"]
    assert tool.parameters["properties"]["zone"] == {"description": "where to count", "enum": ["dock", "aisle"],
                                                     "type": "string"}
    assert tool.parameters["required"] == ["zone"] and tool.parameters["additionalProperties"] is False
    assert "title" not in json.dumps(tool.parameters)


def test_wire_formats_are_the_adapters_own_conversions():
    registry, _ = warehouse()
    assert registry.openai_tools() == [tool_to_openai(s) for s in registry.specs()]
    assert registry.anthropic_tools(["stop_line"]) == [tool_to_anthropic(registry.tools["stop_line"].spec)]
    assert registry.openai_tools(["count_workers"])[0]["function"]["name"] == "count_workers"
    assert registry.anthropic_tools()[0]["input_schema"] == registry.tools["count_workers"].parameters


def test_side_effect_flag():
    registry, _ = warehouse()
    assert registry.side_effect_tools() == ["stop_line"]
    assert not registry.tools["count_workers"].side_effects


def test_call_by_name_or_tool_call_never_raises_for_a_models_mistake():
    registry, _ = warehouse()
    ok = registry.call("count_workers", arguments={"zone": "dock"})
    assert isinstance(ok, ToolResult) and ok == ({"zone": "dock", "count": 3}, False)
    assert ok.content == json.dumps({"zone": "dock", "count": 3})
    assert repr(ok) == repr(({"zone": "dock", "count": 3}, False))  # prints as the pair it always was
    value, is_error = registry.call(call("count_workers", zone="roof"))
    assert is_error and "zone: Input should be 'dock' or 'aisle'" in value
    for result, message in (
        (registry.call("count_workers", arguments={"zone": "dock", "x": 1}), "x: Extra inputs"),
        (registry.call("count_workers"), "zone: Field required"),
        (registry.call("fly"), "unknown tool 'fly'"),
        (registry.call("stop_line", ["count_workers"], arguments={"reason": "x"}), "is not allowed"),
        (registry.call(ToolCall(id="1", name="count_workers", invalid_arguments='{"zo')), "not a JSON object"),
    ):
        assert result.is_error and message in result.value and result.content == result.value


def test_a_tool_that_raises_becomes_an_error_result():
    registry = ToolRegistry()

    @registry.tool
    def divide(a: int, b: int) -> float:
        """Divide a by b.

        Args:
            a: numerator
            b: denominator
        """
        return a / b

    assert registry.call("divide", arguments={"a": 1, "b": 0}) == ("divide failed: ZeroDivisionError: division by zero",
                                                                   True)


# ---- the loop ---------------------------------------------------------------------------------------
def test_loop_calls_tools_then_answers_with_results_in_the_history():
    registry, _ = warehouse()
    fake = FakeScriptedChat([[call("count_workers", zone="dock"), call("count_workers", zone="moon")], "3 workers"])
    loop = run_tool_loop(fake, [], registry, max_steps=3)
    assert loop.answer == "3 workers" and loop.tool_rounds == 1 and not loop.stopped_by_limit
    assert [(s.call.arguments["zone"], s.is_error) for s in loop.steps] == [("dock", False), ("moon", True)]
    tool_turns = [m for m in loop.messages if m.role == "tool"]
    assert tool_turns[0].content == '{"zone": "dock", "count": 3}' and tool_turns[1].is_error
    assert fake.requests[0]["tool_choice"] == "required" and fake.requests[1]["tool_choice"] == "auto"
    assert fake.requests[0]["max_tokens"] == 200


def test_loop_stops_offering_tools_after_max_steps_and_asks_for_the_final_shape():
    registry, _ = warehouse()
    fake = FakeScriptedChat([[call("count_workers", zone="dock")], [call("count_workers", zone="aisle")],
                             '{"answer": "3"}'])
    loop = run_tool_loop(fake, [], registry, max_steps=2, final_schema={"type": "object"})
    assert loop.stopped_by_limit and loop.tool_rounds == 2 and loop.answer == '{"answer": "3"}'
    assert fake.requests[-1]["tool_choice"] == "none" and fake.requests[-1]["response_schema"] == {"type": "object"}


def test_loop_respects_the_allow_list():
    registry, _ = warehouse()
    fake = FakeScriptedChat([[call("stop_line", reason="test")], "done"])
    loop = run_tool_loop(fake, [], registry, allowed=["count_workers"], approve=lambda c: True)
    assert [t.name for t in fake.requests[0]["tools"]] == ["count_workers"]
    assert loop.steps[0].is_error and "is not allowed" in loop.steps[0].result


@pytest.mark.parametrize("approve, taken", [(None, False), (lambda c: False, False), (lambda c: True, True)])
def test_side_effect_tools_run_only_when_approved(approve, taken):
    registry, log = warehouse()
    fake = FakeScriptedChat([[call("stop_line", reason="worker in lane")], "ok"])
    loop = run_tool_loop(fake, [], registry, approve=approve)
    assert (log == ["worker in lane"]) == taken
    assert loop.steps[0].is_error != taken
    if not taken:
        assert "not approved" in loop.steps[0].result


# ---- structured answers -----------------------------------------------------------------------------
class Count(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str
    number: int | None


@pytest.mark.parametrize("text, ok", [
    ('{"answer": "two", "number": 2}', True),
    ('Here: ```json\n{"answer": "two", "number": 2}\n``` done', True),
    ('{"answer": "two", "number": "two"}', False),
    ('{"answer": "two"}', False),
    ("no json at all", False),
])
def test_parse_as_returns_a_value_or_the_validation_error(text, ok):
    value, error = parse_as(Count, text)
    assert (value is not None, error is None) == (ok, ok)


def test_one_repair_round_sends_the_error_and_the_bad_reply_back():
    fake = FakeScriptedChat(['{"answer": "two", "number": "two"}', '{"answer": "two", "number": 2}'])
    result = structured_chat(fake, [], Count)
    assert result.ok and result.repaired and result.value == Count(answer="two", number=2)
    repair = fake.requests[1]["messages"][-1].content
    assert "number: Input should be a valid integer" in repair and '"number": "two"' in repair
    assert fake.requests[0]["response_schema"] == Count.model_json_schema()
    assert fake.requests[0]["schema_name"] == "Count"


def test_repair_gives_up_after_one_round_and_can_be_switched_off():
    fake = FakeScriptedChat(["nope", "still nope"])
    result = structured_chat(fake, [], Count)
    assert not result.ok and len(result.attempts) == 2 and len(result.errors) == 2
    once = structured_chat(FakeScriptedChat(["nope"]), [], Count, repair=False)
    assert not once.ok and len(once.attempts) == 1
