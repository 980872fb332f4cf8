"""The local model for real: SmolLM2 behind the loopback OpenAI-compatible server, driven by the
official ``openai`` SDK, and schema-constrained decoding. Loads the model once (~1 s from the
cache, ~15 s the first time on a machine)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from efsora_helpers.env import prepare_offline_environment
from efsora_helpers.llm import ContextWindowError, LLMClient, ToolSpec, user
from efsora_helpers.llm.local_provider import tool_call_schema
from efsora_helpers.llm.server import LocalServer

prepare_offline_environment()
MODEL = "smollm2-135m-instruct"
TOOLS = [
    {"type": "function", "function": {
        "name": "count_objects", "description": "Count detected objects of one class.",
        "parameters": {"type": "object", "properties": {
            "class_name": {"type": "string", "enum": ["person", "hard_hat", "vest", "forklift", "pallet", "sign"]}},
            "required": ["class_name"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "objects_in_zone", "description": "List the objects inside a named zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "min_overlap": {"type": "number"}},
                       "required": ["zone"], "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def server():
    with LocalServer() as s:
        yield s


@pytest.fixture(scope="module")
def sdk(server):
    return openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=120)


def test_sdk_lists_the_model_and_chats(sdk):
    assert [m.id for m in sdk.models.list()] == [MODEL]
    reply = sdk.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_sdk_tool_calls_name_an_offered_tool_with_schema_valid_arguments(sdk):
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for question in ("How many forklifts are there?", "What is inside the forklift lane?"):
        reply = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                            tools=TOOLS, tool_choice="required", max_tokens=60, temperature=0)
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls" and len(message.tool_calls) == 1
        call = message.tool_calls[0]
        jsonschema.validate(json.loads(call.function.arguments), by_name[call.function.name])


def test_sdk_streams_text_and_tool_calls(sdk):
    chunks = list(sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count the people."}], tools=TOOLS,
        tool_choice="count_objects", max_tokens=40, temperature=0, stream=True, stream_options={"include_usage": True}))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls and calls[0].function.name == "count_objects"
    assert chunks[-1].usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0, stream=True)
        if c.choices)
    assert text


def test_sdk_json_schema_response_validates(sdk):
    schema = {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 0},
                                                "risk": {"type": "string", "enum": ["low", "medium", "high"]}},
              "required": ["workers", "risk"], "additionalProperties": False}
    reply = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Scene: 4 workers, 2 without hard hats. Assess it."}],
        response_format={"type": "json_schema", "json_schema": {"name": "assessment", "schema": schema}},
        max_tokens=40, temperature=0)
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_server_errors_use_openai_shapes(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="context window"):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warehouse " * 9000}],
                                    max_tokens=10)


def test_client_on_the_server_matches_the_in_process_provider(server):
    question = [user("Scene: 3 workers, 1 forklift. How many workers?")]
    over_http = LLMClient("openai_compatible", model=MODEL, base_url=server.base_url).chat(question, max_tokens=20)
    in_process = LLMClient("local").chat(question, max_tokens=20)
    assert over_http.text == in_process.text  # greedy decoding: same model, same tokens
    assert over_http.usage.input_tokens == in_process.usage.input_tokens


@pytest.mark.parametrize("seed", range(4))
def test_constrained_sampling_always_validates(seed):
    """At temperature 1 the unconstrained model wanders; the grammar still forces valid JSON."""
    schema = {"type": "object", "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 50},
        "classes": {"type": "array", "items": {"type": "string", "enum": ["person", "forklift"]}, "maxItems": 3},
        "ok": {"type": "boolean"}}, "required": ["count", "classes", "ok"], "additionalProperties": False}
    reply = LLMClient("local").chat([user("Describe the scene as JSON.")], response_schema=schema,
                                    temperature=1.0, seed=seed, max_tokens=60)
    assert reply.finish_reason == "stop"
    jsonschema.validate(reply.as_json(), schema)


def test_local_tool_schema_admits_only_offered_tools():
    specs = [ToolSpec(name=t["function"]["name"], description="", parameters=t["function"]["parameters"])
             for t in TOOLS]
    schema = tool_call_schema(specs, "auto")
    jsonschema.validate({"tool": "count_objects", "arguments": {"class_name": "vest"}}, schema)
    jsonschema.validate({"answer": "two"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "delete_files", "arguments": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "x"}, tool_call_schema(specs, "required"))


def test_prompt_over_the_context_window_is_refused_before_generating():
    with pytest.raises(ContextWindowError, match="over the context window of 8192"):
        LLMClient("local").chat([user("pallet " * 9000)], max_tokens=10)
