"""The LLM layer: message/tool conversion per provider, the Anthropic SDK against recordings,
errors, retries, the cache and cost. Fast: no model is loaded here (see test_llm_local.py)."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import httpx2  # the transport library of the anthropic and openai SDKs
import pytest

from efsora_helpers.llm import catalog
from efsora_helpers.llm import (
    ChatRequest,
    LLMClient,
    MissingKeyError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseCache,
    RetryPolicy,
    ToolCall,
    ToolSpec,
    UnknownModelError,
    UnknownProviderError,
    Usage,
    assistant,

    system,
    tool_result,
    user,
)
from efsora_helpers.llm.anthropic_provider import (
    AnthropicProvider,
    messages_to_anthropic,
    request_to_anthropic,
    usage_from_anthropic,
)
from efsora_helpers.llm.base import Provider
from efsora_helpers.llm.openai_compat import (
    message_from_openai,
    message_to_openai,
    request_to_openai,
    tool_call_from_openai,
    usage_from_openai,
)
from efsora_helpers.llm.types import ChatResponse, ImageInput, StreamEvent

RECORDINGS = Path(__file__).parent / "recordings" / "anthropic"
COUNT_TOOL = ToolSpec(name="count_objects", description="Count detected objects of one class.",
                      parameters={"type": "object", "properties": {"class_name": {"type": "string"}},
                                  "required": ["class_name"]})
IMAGE = ImageInput(media_type="image/png", data_base64="iVBORw0KGgo=")


def conversation():
    call = ToolCall(id="call_1", name="count_objects", arguments={"class_name": "forklift"})
    return [
        system("You are a warehouse safety assistant."),
        user("How many forklifts?", images=[IMAGE]),
        assistant("Let me count.", [call]),
        tool_result(call, {"count": 2}),
    ]


# ---- OpenAI format ------------------------------------------------------------------------------
def test_openai_messages_keep_system_in_the_list_and_encode_tools_and_images():
    wire = [message_to_openai(m) for m in conversation()]
    assert wire[0] == {"role": "system", "content": "You are a warehouse safety assistant."}
    assert wire[1]["content"][0] == {"type": "text", "text": "How many forklifts?"}
    assert wire[1]["content"][1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    assert wire[2]["tool_calls"][0] == {"id": "call_1", "type": "function", "function": {
        "name": "count_objects", "arguments": '{"class_name": "forklift"}'}}
    assert wire[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"count": 2}'}


def test_openai_round_trip_of_messages():
    for m in conversation():
        back = message_from_openai(message_to_openai(m))
        assert back.role == m.role and back.content == m.content
        assert back.tool_calls == m.tool_calls
        assert [i.data_base64 for i in back.images] == [i.data_base64 for i in m.images]


def test_openai_request_tools_choice_and_json_modes():
    req = ChatRequest(model="m", messages=[user("hi")], tools=[COUNT_TOOL], tool_choice="count_objects")
    body = request_to_openai(req)
    assert body["tools"][0]["function"]["parameters"] == COUNT_TOOL.parameters
    assert body["tool_choice"] == {"type": "function", "function": {"name": "count_objects"}}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    strict = request_to_openai(ChatRequest(model="m", messages=[user("hi")], response_schema=schema))
    assert strict["response_format"]["json_schema"]["schema"] == schema
    # DeepSeek accepts only JSON mode: the schema moves into the prompt.
    loose = request_to_openai(ChatRequest(model="m", messages=[user("hi")], response_schema=schema), "json_object")
    assert loose["response_format"] == {"type": "json_object"}
    assert json.dumps(schema) in loose["messages"][-1]["content"]


def test_openai_invalid_tool_arguments_are_kept_for_the_model_to_fix():
    call = tool_call_from_openai({"id": "c", "function": {"name": "f", "arguments": '{"class_name": "fork'}})
    assert call.arguments == {} and call.invalid_arguments == '{"class_name": "fork'


def test_openai_usage_reads_cached_tokens_of_openai_and_deepseek():
    assert usage_from_openai({"prompt_tokens": 2000, "completion_tokens": 10,
                              "prompt_tokens_details": {"cached_tokens": 1024}}).cached_input_tokens == 1024
    assert usage_from_openai({"prompt_tokens": 2000, "completion_tokens": 10,
                              "prompt_cache_hit_tokens": 1536}).cached_input_tokens == 1536


# ---- Anthropic format -----------------------------------------------------------------------------
def test_anthropic_system_goes_top_level_and_tool_results_into_a_user_turn():
    system_text, wire = messages_to_anthropic(conversation())
    assert system_text == "You are a warehouse safety assistant."
    assert all(m["role"] != "system" for m in wire)
    assert wire[0]["content"][0]["type"] == "image" and wire[0]["content"][0]["source"]["data"] == "iVBORw0KGgo="
    assert wire[1]["content"][1] == {"type": "tool_use", "id": "call_1", "name": "count_objects",
                                     "input": {"class_name": "forklift"}}
    assert wire[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                    "content": '{"count": 2}'}]}


def test_anthropic_parallel_tool_results_share_one_user_message_and_errors_are_flagged():
    a, b = ToolCall(id="a", name="f"), ToolCall(id="b", name="g")
    _, wire = messages_to_anthropic([user("q"), assistant("", [a, b]), tool_result(a, "1"),
                                     tool_result(b, "bad class", is_error=True)])
    assert len(wire) == 3 and [blk["tool_use_id"] for blk in wire[2]["content"]] == ["a", "b"]
    assert wire[2]["content"][1]["is_error"] is True


def test_anthropic_schema_becomes_a_forced_tool_and_tool_choice_maps():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = request_to_anthropic(ChatRequest(model="m", messages=[user("q")], response_schema=schema))
    assert body["tool_choice"] == {"type": "tool", "name": "response"}
    assert body["tools"][0]["input_schema"] == schema
    body = request_to_anthropic(ChatRequest(model="m", messages=[user("q")], tools=[COUNT_TOOL],
                                            tool_choice="required"))
    assert body["tool_choice"] == {"type": "any"} and body["max_tokens"] == 256


def test_anthropic_usage_counts_cached_tokens_in_the_prompt():
    usage = usage_from_anthropic({"input_tokens": 100, "output_tokens": 5, "cache_read_input_tokens": 1000,
                                  "cache_creation_input_tokens": 50})
    assert usage == Usage(input_tokens=1150, output_tokens=5, cached_input_tokens=1000, cache_write_tokens=50)


def replaying(*names: str, seen: list | None = None) -> httpx2.Client:
    """An httpx client whose transport answers each request with the next recording."""
    queue = list(names)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(json.loads(request.content))
        name = queue.pop(0)
        if name.endswith(".sse"):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                  content=(RECORDINGS / name).read_bytes())
        rec = json.loads((RECORDINGS / name).read_text())
        return httpx2.Response(rec["status"], headers=rec["headers"], json=rec["body"])

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def recorded_client(*names: str, seen: list | None = None) -> LLMClient:
    adapter = AnthropicProvider(api_key="sk-ant-recording", http_client=replaying(*names, seen=seen))
    client = LLMClient("anthropic", adapter=adapter)
    client.sleep = lambda s: None
    return client


def test_anthropic_sdk_parses_recorded_text_answer_with_cache_usage_and_cost():
    seen: list = []
    reply = recorded_client("text.json", seen=seen).chat(conversation()[:2])
    assert seen[0]["system"] == "You are a warehouse safety assistant." and "system" not in {
        m["role"] for m in seen[0]["messages"]}
    assert seen[0]["temperature"] == 0.0  # haiku 4.5 still takes it, through extra_body
    assert reply.text == "Two workers are missing hard hats." and reply.finish_reason == "stop"
    assert reply.usage.input_tokens == 1436 and reply.usage.cached_input_tokens == 1024
    price = catalog.model_info("anthropic", "claude-haiku-4-5")
    expected = (412 * price.input_per_mtok + 1024 * price.cached_input_per_mtok + 11 * price.output_per_mtok) / 1e6
    assert reply.cost_usd == pytest.approx(expected)


def test_anthropic_sdk_parses_recorded_tool_use():
    reply = recorded_client("tool_use.json").chat([user("How many forklifts?")], tools=[COUNT_TOOL])
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == [ToolCall(id="toolu_01A09q90qw90lq917835lq9", name="count_objects",
                                         arguments={"class_name": "forklift"})]


def test_anthropic_structured_answer_arrives_as_forced_tool_input():
    reply = recorded_client("structured.json").chat(
        [user("How many lack hard hats?")], response_schema={"type": "object"})
    assert reply.as_json() == {"count": 2, "answer": "Two workers lack hard hats."} and not reply.tool_calls


def test_anthropic_sdk_streams_recorded_events():
    events = list(recorded_client("stream.sse").stream([user("q")]))
    assert "".join(e.text for e in events if e.type == "text") == "Two workers lack hard hats."
    done = events[-1].response
    assert done.usage.output_tokens == 9 and done.usage.input_tokens == 25


def test_anthropic_rate_limit_is_retried_after_the_servers_delay():
    client = recorded_client("rate_limit.json", "text.json")
    slept: list[float] = []
    client.sleep = slept.append
    reply = client.chat([user("q")])
    assert reply.attempts == 2 and slept == [2.0]


def test_anthropic_unknown_model_from_the_server_is_reported():
    with pytest.raises(UnknownModelError, match="not found"):
        recorded_client("not_found.json").chat([user("q")])


# ---- client policies -------------------------------------------------------------------------------
class FakeFlakyAdapter(Provider):
    """A fake provider for unit tests: fails ``failures`` times, then answers."""

    name = "fake"

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def complete(self, request):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return ChatResponse(provider="fake", model=request.model, text="ok",
                            usage=Usage(input_tokens=1000, output_tokens=100))

    def stream(self, request):
        yield StreamEvent(type="done", response=self.complete(request))


def fake_client(adapter, **kw) -> LLMClient:
    client = LLMClient("openai", model="gpt-4o-mini", adapter=adapter, **kw)
    client.sleep = lambda s: None
    return client


def test_retries_with_backoff_then_gives_up():
    adapter = FakeFlakyAdapter(2, RateLimitError("429"))
    assert fake_client(adapter).chat([user("q")]).attempts == 3
    adapter = FakeFlakyAdapter(9, ProviderTimeoutError("slow"))
    with pytest.raises(ProviderTimeoutError):
        fake_client(adapter, retry=RetryPolicy(max_retries=2)).chat([user("q")])
    assert adapter.calls == 3


def test_backoff_delays_grow_and_are_capped():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0, seed=3)
    delays = [policy.delay(a, RuntimeError()) for a in range(6)]
    assert all(0 <= d <= min(4.0, 2**a) for a, d in enumerate(delays))


def test_cache_serves_repeated_deterministic_calls_for_free():
    adapter = FakeFlakyAdapter(0, RuntimeError())
    client = fake_client(adapter, cache=ResponseCache())
    first, second = client.chat([user("q")]), client.chat([user("q")])
    assert adapter.calls == 1 and second.cached and second.cost_usd == 0.0 and first.cost_usd > 0
    client.chat([user("q")], temperature=0.7)  # sampling is never cached
    assert adapter.calls == 2


def test_cost_uses_the_price_table():
    info = catalog.model_info("openai", "gpt-4o-mini")
    assert info.cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == pytest.approx(0.75)
    assert info.cost(Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)) == pytest.approx(0.075)
    assert catalog.model_info("openai_compatible", "anything").cost(Usage(input_tokens=5)) is None


def test_every_catalog_model_has_a_date_and_provider():
    for (provider, _), m in catalog.MODELS.items():
        assert provider in catalog.PROVIDERS
        assert provider == "local" or (m.as_of and provider in catalog.PRICE_SOURCES)


# ---- errors ------------------------------------------------------------------------------------------
def test_missing_key_names_the_variable_and_never_a_value(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="set OPENAI_API_KEY"):
        LLMClient("openai")


def test_unknown_model_and_provider(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with pytest.raises(UnknownModelError, match="known: gpt-6-luna"):
        LLMClient("openai", model="gpt-0")
    with pytest.raises(UnknownProviderError, match="known: local"):
        LLMClient("mistral")


def test_provider_resolution_order(monkeypatch):
    for var in ("EFSORA_LLM_PROVIDER", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert catalog.resolve_provider() == "local"
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    assert catalog.resolve_provider() == "deepseek"
    monkeypatch.setenv("EFSORA_LLM_PROVIDER", "anthropic")
    assert catalog.resolve_provider() == "anthropic"
    assert catalog.resolve_provider("local") == "local"


@pytest.fixture
def silent_server():
    """A loopback TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    conns = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for c in conns:
        c.close()
    sock.close()


def test_a_server_that_times_out_raises_after_retries(silent_server):
    client = LLMClient("openai_compatible", model="any", base_url=silent_server, timeout=0.3,
                       retry=RetryPolicy(max_retries=1))
    client.sleep = lambda s: None
    with pytest.raises(ProviderTimeoutError, match="openai_compatible: no answer within the timeout"):
        client.chat([user("q")])


def test_openai_compatible_needs_a_base_url(monkeypatch):
    monkeypatch.delenv("EFSORA_LLM_BASE_URL", raising=False)
    with pytest.raises(Exception, match="EFSORA_LLM_BASE_URL"):
        LLMClient("openai_compatible", model="llama3")


def test_a_custom_server_is_available_only_with_a_model_and_then_uses_it(monkeypatch):
    monkeypatch.setenv("EFSORA_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("EFSORA_LLM_MODEL", raising=False)
    assert "openai_compatible" not in catalog.available_providers()
    with pytest.raises(UnknownModelError, match="set EFSORA_LLM_MODEL"):
        LLMClient("openai_compatible")
    monkeypatch.setenv("EFSORA_LLM_MODEL", "llama3")
    assert "openai_compatible" in catalog.available_providers()
    unused = FakeFlakyAdapter(0, RuntimeError())  # the model is resolved before any adapter is used
    for provider in catalog.available_providers():  # every listed provider has a model
        assert LLMClient(provider, adapter=unused).model
    assert LLMClient("openai_compatible").model == "llama3"
    assert LLMClient("openai_compatible", model="qwen3").model == "qwen3"
    # The variable names a custom server's model, not the local one's.
    assert LLMClient("local", adapter=unused).model == catalog.PROVIDERS["local"].default_model


# ---- live (only with keys) ---------------------------------------------------------------------------
@pytest.mark.live
@pytest.mark.parametrize("provider", ["openai", "anthropic", "deepseek", "gemini"])
def test_live_provider_answers_and_calls_a_tool(provider):
    variable = catalog.PROVIDERS[provider].key_variable
    if not os.environ.get(variable):
        pytest.skip(f"live test: set {variable} to run it against the real {provider} API")
    client = LLMClient(provider)
    reply = client.chat([user("Reply with the single word: ready")], max_tokens=10)
    assert reply.text and reply.usage.output_tokens > 0
    call = client.chat([user("How many forklifts are in the scene? Use the tool.")], tools=[COUNT_TOOL],
                       tool_choice="required", max_tokens=100)
    assert call.tool_calls and call.tool_calls[0].name == "count_objects"
