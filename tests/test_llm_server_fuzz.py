"""The loopback server refuses malformed requests with a 4xx that says what is wrong, never a 500.

Three layers: named cases (one per rule, with the parameter the error must name); a property-based
fuzz with hypothesis over well-formed, mutated and arbitrary bodies (zero 5xx; every 4xx in OpenAI's
error shape; every well-formed body answered); and the issue's five requests against the real local
model through the official ``openai`` SDK (slow). The fuzz drives the app in-process with a fake
provider that echoes, so it runs in seconds.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from efsora_helpers.llm.base import Provider
from efsora_helpers.llm.errors import ContextWindowError, InvalidRequestError
from efsora_helpers.llm.server import LocalServer, create_app
from efsora_helpers.llm.server_request import MAX_SEED
from efsora_helpers.llm.types import ChatResponse, StreamEvent, ToolCall, Usage
from test_llm_local import MODEL as LOCAL_MODEL
from test_llm_local import sdk, server  # noqa: F401 - the real server's fixtures, shared, not copied

MODEL = "fake-echo"
URL = "/v1/chat/completions"
USER = [{"role": "user", "content": "How many forklifts?"}]
COUNT_TOOL = {"type": "function", "function": {
    "name": "count_objects", "description": "Count objects of one class.",
    "parameters": {"type": "object", "properties": {"class_name": {"type": "string"}}, "required": ["class_name"]}}}
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class FakeEchoProvider(Provider):
    """A fake for unit tests: answers with the last message's text, or calls the first offered tool."""

    name = "fake"

    def complete(self, request):
        if request.tools and request.tool_choice != "none":
            call = ToolCall(id="call_fake", name=request.tools[0].name if request.tool_choice in (
                "auto", "required") else request.tool_choice, arguments={})
            return ChatResponse(provider=self.name, model=request.model, tool_calls=[call], finish_reason="tool_calls")
        return ChatResponse(provider=self.name, model=request.model, text=request.messages[-1].content[:50],
                            usage=Usage(input_tokens=3, output_tokens=2))

    def stream(self, request):
        response = self.complete(request)
        if response.text:
            yield StreamEvent(type="text", text=response.text)
        yield StreamEvent(type="done", response=response)


class FakeFailingProvider(Provider):
    """A fake that raises ``error``, at once or (``after_text``) after one streamed delta."""

    name = "fake"

    def __init__(self, error: Exception, after_text: bool = False):
        self.error, self.after_text = error, after_text

    def complete(self, request):
        raise self.error

    def stream(self, request):
        if self.after_text:
            yield StreamEvent(type="text", text="The scene has")
        raise self.error


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(FakeEchoProvider(), MODEL), raise_server_exceptions=False)


def assert_openai_error(response, status: int | None = None) -> dict:
    """A 4xx in OpenAI's shape with a one-line message; returns the error object."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert isinstance(error["message"], str) and error["message"] and "\n" not in error["message"]
    assert "Traceback" not in error["message"]
    return error


def body(**fields) -> dict:
    return {"model": MODEL, "messages": USER, **fields}


def schema_format(schema: Any) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


# ---- one case per rule: (body, the param the error names, a fragment of its message) --------------
CASES = {
    "empty messages": (body(messages=[]), "messages", "at least one message"),
    "no messages": ({"model": MODEL}, "messages", "missing required parameter"),
    "messages not a list": (body(messages="hi"), "messages", "valid list"),
    "message not an object": (body(messages=["hi"]), "messages[0]", "valid dictionary"),
    "unknown role": (body(messages=[{"role": "bot", "content": "x"}]), "messages[0].role", "'bot'"),
    "content a number": (body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "not a number"),
    "user without content": (body(messages=[{"role": "user"}]), "messages[0].content", "needs content"),
    "unknown content part": (body(messages=[{"role": "user", "content": [{"type": "video"}]}]),
                             "messages[0].content[0].type", "'video'"),
    "text part without text": (body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
                               "messages[0].content[0].text", "needs its"),
    "image in a system message": (body(messages=[{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}, *USER]),
        "messages[0].content[0]", "system message takes text"),
    "image by URL": (body(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]),
        "messages[0].content[0].image_url.url", "never fetches"),
    "tool message without id": (body(messages=[*USER, {"role": "tool", "content": "2"}]),
                                "messages[1].tool_call_id", "tool_call_id"),
    "max_tokens -5": (body(max_tokens=-5), "max_tokens", "greater than or equal to 1"),
    "max_tokens 0": (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
    "max_tokens a string": (body(max_tokens="64"), "max_tokens", "valid integer"),
    "max_tokens a float": (body(max_tokens=64.5), "max_tokens", "valid integer"),
    "max_tokens a boolean": (body(max_tokens=True), "max_tokens", "valid integer"),
    "max_completion_tokens -1": (body(max_completion_tokens=-1), "max_completion_tokens", "greater than"),
    "temperature 3": (body(temperature=3), "temperature", "less than or equal to 2"),
    "temperature negative": (body(temperature=-0.1), "temperature", "greater than or equal to 0"),
    "temperature a string": (body(temperature="0.5"), "temperature", "valid number"),
    "top_p 0": (body(top_p=0), "top_p", "greater than 0"),
    "top_p 1.5": (body(top_p=1.5), "top_p", "less than or equal to 1"),
    "seed negative": (body(seed=-1), "seed", "greater than or equal to 0"),
    "seed too big": (body(seed=MAX_SEED + 1), "seed", "less than or equal to"),
    "stop a number": (body(stop=7), "stop", "not a number"),
    "stop five sequences": (body(stop=list("abcde")), "stop", "at most 4"),
    "stop empty": (body(stop=[""]), "stop", "non-empty"),
    "stream a string": (body(stream="yes"), "stream", "valid boolean"),
    "stream_options without stream": (body(stream_options={"include_usage": True}), "stream_options", "stream"),
    "n 2": (body(n=2), "n", "one choice per request"),
    "n 0": (body(n=0), "n", "one choice per request"),
    "unknown parameter": (body(max_token=5), "max_token", "unrecognized request argument"),
    "penalty": (body(frequency_penalty=0.5), "frequency_penalty", "not supported"),
    "tool without function": (body(tools=[{"type": "function"}]), "tools[0].function", "missing"),
    "tool without name": (body(tools=[{"type": "function", "function": {"parameters": {"type": "object"}}}]),
                          "tools[0].function.name", "missing"),
    "tool name with spaces": (body(tools=[{"type": "function", "function": {"name": "count objects"}}]),
                              "tools[0].function.name", "pattern"),
    "tool parameters not an object schema": (body(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "string"}}}]), "tools[0].function.parameters", '"type": "object"'),
    "tool parameters a list": (body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
                               "tools[0].function.parameters", "valid dictionary"),
    "tool parameters invalid schema": (body(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "int"}}}}}]),
        "tools[0].function.parameters", "not a valid JSON Schema"),
    "duplicate tools": (body(tools=[COUNT_TOOL, COUNT_TOOL]), "tools[1].function.name", "unique"),
    "tool_choice names a missing tool": (body(tools=[COUNT_TOOL], tool_choice={
        "type": "function", "function": {"name": "delete_files"}}), "tool_choice", "not in tools"),
    "tool_choice invalid word": (body(tool_choice="sometimes"), "tool_choice", "'sometimes'"),
    "tool_choice required without tools": (body(tool_choice="required"), "tool_choice", "at least one tool"),
    "response_format unknown type": (body(response_format={"type": "yaml"}), "response_format.type", "'yaml'"),
    "json_schema missing": (body(response_format={"type": "json_schema"}), "response_format.json_schema",
                            "needs"),
    "json_schema without schema": (body(response_format={"type": "json_schema", "json_schema": {"name": "a"}}),
                                   "response_format.json_schema.schema", "missing"),
    "schema not valid": (body(response_format=schema_format({"type": "obj"})),
                         "response_format.json_schema.schema", "not a valid JSON Schema"),
    "schema required not a list": (body(response_format=schema_format({"type": "object", "required": "a"})),
                                   "response_format.json_schema.schema", "not a valid JSON Schema"),
    "unresolvable $ref": (body(response_format=schema_format({
        "type": "object", "properties": {"zone": {"$ref": "#/$defs/Zone"}}})),
        "response_format.json_schema.schema", "does not resolve"),
    "remote $ref": (body(response_format=schema_format({"$ref": "https://example.com/zone.json"})),
                    "response_format.json_schema.schema", "never fetches"),
    "relative file $ref": (body(response_format=schema_format({"$ref": "zone.json#/Zone"})),
                           "response_format.json_schema.schema", "never fetches"),
    "$ref into an array by word": (body(response_format=schema_format({"enum": [1], "$ref": "#/enum/x"})),
                                   "response_format.json_schema.schema", "does not resolve"),
    "$schema not a string": (body(response_format=schema_format({"$schema": [1]})),
                             "response_format.json_schema.schema", "meta-schema URI"),
    "schema too deep": (body(response_format=schema_format(json.loads('{"items":' * 150 + "{}" + "}" * 150))),
                        "response_format.json_schema.schema", "levels deep"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_malformed_request_gets_a_400_naming_the_parameter(client, name):
    sent, param, fragment = CASES[name]
    error = assert_openai_error(client.post(URL, json=sent), 400)
    assert error["param"] == param, error
    assert fragment in error["message"], error


@pytest.mark.parametrize("raw", [b"", b"not json", b"{\"messages\": [", b"[1, 2]", b"5", b'"hi"', b"null",
                                 b"\xff\xfe", b"[" * 100_000])
@pytest.mark.parametrize("content_type", ["application/json", None])
def test_a_body_that_is_not_a_json_object_gets_a_400(client, raw, content_type):
    headers = {"content-type": content_type} if content_type else {}
    error = assert_openai_error(client.post(URL, content=raw, headers=headers), 400)
    assert "request body" in error["message"]


def test_unknown_model_is_a_404_and_unknown_routes_keep_the_shape(client):
    assert assert_openai_error(client.post(URL, json=body(model="gpt-9")), 404)["code"] == "model_not_found"
    assert_openai_error(client.get("/v1/nothing"), 404)
    assert_openai_error(client.get(URL), 405)


def test_well_formed_requests_are_answered(client):
    reply = client.post(URL, json=body(max_tokens=16, temperature=0, stop="\n", seed=3, n=1, user="u",
                                       frequency_penalty=0, logprobs=False, parallel_tool_calls=True))
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "How many forklifts?"
    reply = client.post(URL, json=body(tools=[COUNT_TOOL], tool_choice={"type": "function", "function": {
        "name": "count_objects"}}, response_format={"type": "text"}))
    assert reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "count_objects"
    local_ref = {"type": "object", "properties": {"zone": {"$ref": "#/$defs/Zone"}}, "required": ["zone"],
                 "$defs": {"Zone": {"type": "string", "enum": ["forklift_zone"]}}}
    assert client.post(URL, json=body(response_format=schema_format(local_ref))).status_code == 200
    # An assistant message as the SDK returns it (extra fields, null content) goes back in as is.
    history = [*USER, {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "count_objects", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"}]
    assert client.post(URL, json=body(messages=history, tools=[COUNT_TOOL], tool_choice="none")).status_code == 200


def test_the_openapi_document_shows_the_contract_and_the_error_shape(client):
    operation = client.get("/openapi.json").json()["paths"][URL]["post"]
    assert set(operation["responses"]) == {"200", "4XX", "500"}  # 400, not FastAPI's 422
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionBody")


# ---- the provider's errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("error, status, fragment", [
    (ContextWindowError(9000, 100_000, 8192, MODEL), 400, "context window"),
    (InvalidRequestError("the engine cannot compile this schema: regex parse error:\n  (?<=a)b\n  ^^^^"), 400,
     "cannot compile"),
    (RuntimeError("tensor shape mismatch in layer 3"), 500, "internal server error (RuntimeError)"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_errors_map_to_a_status_without_a_traceback(error, status, fragment, stream):
    client = TestClient(create_app(FakeFailingProvider(error), MODEL), raise_server_exceptions=False)
    reply = client.post(URL, json=body(stream=stream))
    assert reply.status_code == status and fragment in reply.json()["error"]["message"]
    assert "\n" not in reply.json()["error"]["message"]
    assert "Traceback" not in reply.text and "layer 3" not in reply.text


def test_the_fast_runtimes_schema_error_is_the_callers_fault():
    from efsora_helpers.llm.ort_runtime import UnsupportedSchemaError

    assert issubclass(UnsupportedSchemaError, InvalidRequestError)  # so the server answers it with 400


def test_a_stream_that_fails_midway_ends_with_an_error_event_the_sdk_raises():
    with LocalServer(FakeFailingProvider(RuntimeError("decoder crashed"), after_text=True), MODEL) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=10)
        stream = sdk.chat.completions.create(model=MODEL, messages=USER, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="internal server error"):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert "The scene has" in received


# ---- fuzz -------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
names = st.from_regex(r"[a-zA-Z0-9_-]{1,16}", fullmatch=True)
schema_keywords = st.sampled_from(["type", "properties", "required", "items", "enum", "$ref", "$defs", "anyOf",
                                   "minimum", "maxLength", "additionalProperties", "$schema", "$id", "const"])
schema_like = st.recursive(
    st.booleans() | st.just({}) | st.sampled_from([{"type": t} for t in ("string", "integer", "object", "obj")]),
    lambda children: st.dictionaries(schema_keywords, children | json_values | st.sampled_from(
        ["#/$defs/A", "#", "#/properties", "https://example.com/s.json", "A.json", "string", ["a"]]), max_size=4),
    max_leaves=10)
object_schemas = st.builds(
    lambda props, defs: {"type": "object", "properties": props, "$defs": defs,
                         "required": sorted(props)[:1]},
    st.dictionaries(names, st.sampled_from([{"type": "string"}, {"type": "integer", "minimum": 0},
                                            {"$ref": "#/$defs/Zone"}, {"type": "array", "items": {"type": "boolean"}}]),
                    max_size=3),
    st.just({"Zone": {"type": "string", "enum": ["forklift_zone", "aisle"]}}))


@st.composite
def well_formed(draw) -> dict:
    """A request every OpenAI-compatible server should answer."""
    messages = draw(st.lists(st.fixed_dictionaries({
        "role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": st.text(max_size=20)}),
        max_size=3)) + [{"role": "user", "content": draw(st.text(max_size=20)) or "hi"}]
    out: dict[str, Any] = {"messages": messages}
    optional = {
        "model": st.just(MODEL), "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1),
        "max_tokens": st.integers(1, 4096), "max_completion_tokens": st.integers(1, 4096),
        "seed": st.integers(0, MAX_SEED), "n": st.just(1), "stream": st.booleans(),
        "stop": st.text(min_size=1, max_size=5) | st.lists(st.text(min_size=1, max_size=5), max_size=4),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]) | object_schemas.map(
            schema_format),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            out[key] = draw(strategy)
    if draw(st.booleans()):
        tools = draw(st.lists(st.builds(lambda n, p: {"type": "function", "function": {"name": n, "parameters": p}},
                                        names, object_schemas), min_size=1, max_size=3, unique_by=lambda t: t[
            "function"]["name"]))
        out["tools"] = tools
        out["tool_choice"] = draw(st.sampled_from(["auto", "none", "required"]) | st.sampled_from(
            [{"type": "function", "function": {"name": t["function"]["name"]}} for t in tools]))
    if out.get("stream") and draw(st.booleans()):
        out["stream_options"] = {"include_usage": draw(st.booleans())}
    return out


@st.composite
def mutated(draw) -> dict:
    """A well-formed request with one part replaced, removed or added: mostly malformed."""
    request = draw(well_formed())
    for _ in range(draw(st.integers(1, 3))):
        node, paths = request, []
        while isinstance(node, (dict, list)) and node:  # walk down a random path
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            paths.append((node, key))
            if draw(st.booleans()):
                break
            node = node[key]
        if not paths:
            continue
        parent, key = paths[-1]
        action = draw(st.sampled_from(["replace", "replace", "schema", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8) | st.sampled_from(["max_tokens", "tool_choice", "$ref", "role"]))] = draw(
                json_values)
        else:
            parent[key] = draw(schema_like if action == "schema" else json_values)
    return request


def post(client, sent):
    # Python's json writes NaN and Infinity, and FastAPI's parser reads them: fuzz those too.
    return client.post(URL, content=json.dumps(sent), headers={"content-type": "application/json"})


def check_answer(response, sent) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300], sent)
    if response.status_code >= 400:
        assert_openai_error(response)
    elif isinstance(sent, dict) and sent.get("stream") is True:
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["role"] == "assistant"


@FUZZ
@given(request=well_formed())
def test_fuzz_well_formed_requests_are_always_answered(client, request):
    response = client.post(URL, json=request)
    assert response.status_code == 200, (response.text[:300], request)
    check_answer(response, request)


@FUZZ
@given(request=mutated())
def test_fuzz_mutated_requests_never_get_a_5xx(client, request):
    check_answer(post(client, request), request)


@FUZZ
@given(sent=json_values | st.dictionaries(st.sampled_from(["model", "messages", "tools", "stream", "n", "stop"]),
                                          json_values, max_size=4))
def test_fuzz_arbitrary_json_bodies_never_get_a_5xx(client, sent):
    check_answer(post(client, sent), sent)


@FUZZ
@given(raw=st.binary(max_size=64))
def test_fuzz_arbitrary_bytes_never_get_a_5xx(client, raw):
    check_answer(client.post(URL, content=raw, headers={"content-type": "application/json"}), raw)


# ---- the issue's requests against the real local model, through the official SDK ---------------------
REAL_CASES = {
    "empty messages": (dict(messages=[]), "at least one message"),
    "unresolvable $ref": (dict(messages=USER, response_format=schema_format(
        {"type": "object", "properties": {"zone": {"$ref": "#/$defs/Zone"}}})), "does not resolve"),
    "max_tokens -5": (dict(messages=USER, max_tokens=-5), "max_tokens"),
    # The two a real client most often gets wrong: a tool_choice left over from another tool set, and a
    # max_tokens sized for a hosted model's window (the local model has 8,192 tokens).
    "tool_choice names a missing tool": (dict(messages=USER, tools=[COUNT_TOOL], tool_choice={
        "type": "function", "function": {"name": "objects_in_zone"}}), "not in tools"),
    "max_tokens over the context window": (dict(messages=USER, max_tokens=100_000), "context window"),
    # Valid JSON Schema, but an object that must contain itself: llguidance's parser outgrows its
    # limit mid-answer, which the runtime reports as the request's fault.
    "a schema that must contain itself": (dict(messages=USER, max_tokens=64, response_format=schema_format(
        {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]})), "too complex"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL_CASES))
def test_real_server_rejects_the_issues_requests_with_400(sdk, name):
    fields, fragment = REAL_CASES[name]
    with pytest.raises(openai.BadRequestError, match=fragment) as caught:
        sdk.chat.completions.create(model=LOCAL_MODEL, **fields)
    assert caught.value.status_code == 400 and set(caught.value.body) >= {"message", "type", "param"}

