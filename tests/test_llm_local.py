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
        tool_choice={"type": "function", "function": {"name": "count_objects"}}, max_tokens=40, temperature=0, stream=True, stream_options={"include_usage": True}))
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


# ---- the fast runtime (onnxruntime-genai), the default behind the local provider -------------------

@pytest.fixture(scope="module")
def runtime():
    from efsora_helpers.llm.ort_runtime import load_runtime_model

    return load_runtime_model()


@pytest.fixture(scope="module")
def prompt(runtime):
    return runtime.render([{"role": "user", "content": "Scene: 3 workers, 1 forklift. Describe the risks."}])


def test_runtime_switch_defaults_to_onnx(monkeypatch):
    from efsora_helpers.llm import ort_runtime

    monkeypatch.delenv(ort_runtime.RUNTIME_VARIABLE, raising=False)
    assert ort_runtime.selected_runtime() == "onnx"
    monkeypatch.setenv(ort_runtime.RUNTIME_VARIABLE, "transformers")
    assert ort_runtime.selected_runtime() == "transformers"
    monkeypatch.setenv(ort_runtime.RUNTIME_VARIABLE, "vllm")
    with pytest.raises(ValueError, match="onnx"):
        ort_runtime.selected_runtime()


@pytest.mark.slow
def test_provider_uses_the_selected_runtime(monkeypatch):
    from efsora_helpers.llm.local import LocalModel
    from efsora_helpers.llm.local_provider import LocalProvider
    from efsora_helpers.llm.ort_runtime import RUNTIME_VARIABLE, RuntimeModel

    monkeypatch.delenv(RUNTIME_VARIABLE, raising=False)
    assert isinstance(LocalProvider().llm, RuntimeModel)
    monkeypatch.setenv(RUNTIME_VARIABLE, "transformers")
    assert isinstance(LocalProvider().llm, LocalModel)


def test_guidance_schema_closes_objects_and_fixes_whitespace():
    from efsora_helpers.llm.ort_runtime import guidance_schema

    schema = guidance_schema({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}})
    assert schema["additionalProperties"] is False and schema["properties"]["a"]["additionalProperties"] is False
    # The separators of xgrammar's compact JSON: the answers' token paths stay those of the old loop.
    assert schema["x-guidance"] == {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    assert guidance_schema(None)["type"] == "object"  # JSON mode: any object


@pytest.mark.slow
def test_runtime_build_is_keyed_by_weights_precision_and_builder(runtime):
    from efsora_helpers.assets import asset
    from efsora_helpers.llm.local import ASSET
    from efsora_helpers.llm.ort_runtime import PRECISION, builder_version, runtime_dir

    path = runtime_dir()
    assert path == runtime.path and (path / "genai_config.json").exists()
    assert asset(ASSET).sha256[:12] in path.name and path.name.endswith(f"ortgenai{builder_version()}-{PRECISION}")
    assert json.loads((path / "efsora_build.json").read_text())["precision"] == PRECISION
    assert not list(path.parent.glob(path.name + ".tmp*"))  # the build renames its temp folder away


@pytest.mark.slow
def test_runtime_greedy_is_deterministic_and_streams_its_text(runtime, prompt):
    deltas: list[str] = []
    first = runtime.generate(prompt, max_new_tokens=24, on_text=deltas.append, repetition_penalty=1.1)
    again = runtime.generate(prompt, max_new_tokens=24, repetition_penalty=1.1)
    assert first.text and first.text == again.text and first.token_ids == again.token_ids
    assert "".join(deltas) == first.text
    assert first.finish_reason == "length" and len(first.token_ids) == 24
    assert first.prompt_tokens == runtime.count_tokens(prompt) and 0 < first.first_token_s < first.total_s


@pytest.mark.slow
def test_runtime_stop_strings_cut_the_text(runtime, prompt):
    full = runtime.generate(prompt, max_new_tokens=24)
    word = full.text.split()[2]
    cut = runtime.generate(prompt, max_new_tokens=24, stop=[word])
    assert cut.finish_reason == "stop" and word not in cut.text and full.text.startswith(cut.text)


@pytest.mark.slow
def test_runtime_trace_points_to_the_teaching_loop(runtime, prompt):
    with pytest.raises(ValueError, match="load_local_model"):
        runtime.generate(prompt, max_new_tokens=4, trace=True)


@pytest.mark.slow
def test_runtime_refuses_a_schema_llguidance_cannot_compile(runtime, prompt):
    from efsora_helpers.llm.ort_runtime import UnsupportedSchemaError

    with pytest.raises(UnsupportedSchemaError, match="JSON Schema"):
        runtime.generate(prompt, max_new_tokens=4, json_schema={"type": "object", "properties": {
            "a": {"$ref": "#/$defs/missing"}}})


@pytest.mark.slow
def test_runtime_json_mode_starts_an_object(runtime, prompt):
    # Unbounded JSON (free keys and strings) lets a 135M model ramble to max_tokens, as with
    # xgrammar: the grammar guarantees the shape of what is written, not that it closes.
    gen = runtime.generate(prompt, max_new_tokens=12, json_mode=True)
    assert gen.text.startswith("{")


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["DirectResponse", "ReasoningResponse", "grounded SceneAnalysis"])
def test_runtime_answers_validate_against_the_reasoner_models(shape):
    from efsora_helpers.reasoner import structured

    schema = (structured.grounded_analysis_schema([3, 5]) if shape.startswith("grounded")
              else structured.schema_of(getattr(structured, shape)))
    reply = LLMClient("local").chat(
        [user("Scene: 2 workers (ids 3 and 5), worker 5 has no hard hat, one forklift. Assess it.")],
        response_schema=schema, max_tokens=400)
    assert reply.finish_reason == "stop"
    jsonschema.validate(reply.as_json(), schema)
    if not shape.startswith("grounded"):
        getattr(structured, shape).model_validate(reply.as_json())
