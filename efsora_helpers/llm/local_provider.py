"""The ``local`` provider: chat, tools, JSON and streaming on SmolLM2 with no key and no network.

Small open models have no native tool-calling format, so this adapter does what servers such as
vLLM and llama.cpp do for them: it describes the tools in the system prompt and constrains the
answer to a JSON Schema that admits exactly ``{"tool": <name>, "arguments": {...}}`` for each
allowed tool, or ``{"answer": "..."}``. The model can only emit a call to a tool that exists, with
arguments of the declared types. Taught in ``notebooks/reasoner/03_tools.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from typing import Iterator

from .base import Provider
from .errors import ContextWindowError
from .local import MODEL_ID, TUNED_MODEL_ID
from .ort_runtime import load_default_model
from .types import ChatRequest, ChatResponse, Message, StreamEvent, ToolCall, ToolSpec, Usage, schema_instruction

ANSWER_MAX_CHARS = 400  # bounds a constrained free-text answer so it closes within max_tokens
MAX_ENUM_RANGE = 1000  # a bounded integer with fewer values than this becomes an enum


def bounded_ints_as_enums(schema):
    """Bounded integers rewritten as enums, recursively.

    xgrammar's JSON grammar does not cap an integer's digits by ``minimum``/``maximum``, and a small
    model can write ``1234567890...`` until ``max_tokens``. An enum of the allowed values can only
    be written in full. Pydantic still checks the bounds afterwards.
    """
    if isinstance(schema, list):
        return [bounded_ints_as_enums(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_ints_as_enums(v) for k, v in schema.items()}
    lo, hi = out.get("minimum"), out.get("maximum")
    if out.get("type") == "integer" and lo is not None and hi is not None and hi - lo < MAX_ENUM_RANGE:
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(int(lo), int(hi) + 1))
    return out


def required_only(parameters: dict) -> dict:
    """The arguments schema without its optional properties.

    A 135M model offered an optional number tends to write one, and a JSON number has no length
    limit in the grammar: it can run to ``max_tokens``. Offering only the required arguments leaves
    the optional ones at their defaults. A simplification for the small local model only; hosted
    models get the full schema.
    """
    required = parameters.get("required", [])
    props = {k: v for k, v in parameters.get("properties", {}).items() if k in required}
    return {**parameters, "properties": props, "required": list(required), "additionalProperties": False}


def tool_call_schema(tools: list[ToolSpec], tool_choice: str = "auto") -> dict:
    """One JSON Schema for "call one of these tools, or answer": the local tool-calling format."""
    chosen = [t for t in tools if tool_choice in ("auto", "required") or t.name == tool_choice]
    branches = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": required_only(t.parameters)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    if tool_choice == "auto":
        branches.append({
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": ANSWER_MAX_CHARS}},
            "required": ["answer"],
            "additionalProperties": False,
        })
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def tools_prompt(tools: list[ToolSpec]) -> str:
    lines = ["You can call these tools. To call one, reply with JSON "
             '{"tool": "<name>", "arguments": {...}}. When you can answer, reply with JSON '
             '{"answer": "<text>"}.', "Tools:"]
    for t in tools:
        props = t.parameters.get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        lines.append(f"- {t.name}({args}): {t.description}")
    return "\n".join(lines)


def to_chat_dicts(messages: list[Message], tools: list[ToolSpec] | None = None) -> list[dict[str, str]]:
    """Our messages as the role/content dicts of the model's chat template.

    Images are dropped with a note (SmolLM2 is text-only); tool calls are shown as the JSON the
    model emits; tool results become user turns that say which tool they come from.
    """
    out: list[dict[str, str]] = []
    system_parts = [m.content for m in messages if m.role == "system"]
    if tools:
        system_parts.append(tools_prompt(tools))
    if system_parts:
        out.append({"role": "system", "content": "\n\n".join(system_parts)})
    for m in messages:
        if m.role == "system":
            continue
        content = m.content
        if m.images:
            content += f"\n[{len(m.images)} image(s) omitted: this model reads text only]"
        if m.role == "assistant" and m.tool_calls:
            call = m.tool_calls[0]
            content = json.dumps({"tool": call.name, "arguments": call.arguments})
        if m.role == "tool":
            status = "error" if m.is_error else "result"
            out.append({"role": "user", "content": f"Tool {m.name} {status}: {m.content}"})
            continue
        out.append({"role": m.role, "content": content})
    return out


class LocalProvider(Provider):
    name = "local"

    def __init__(self, model: str = MODEL_ID, repetition_penalty: float = 1.1, adapter_dir=None,
                 precision: str = "fp32", cache_dir=None):
        """``model=TUNED_MODEL_ID`` serves chapter 4's shipped LoRA adapter; ``adapter_dir`` any other
        adapter folder. An adapter is baked into the fast runtime (built once, cached) at ``precision``:
        fp32 by default, the precision its before/after evaluation used."""
        self.model_id = model
        self.repetition_penalty = repetition_penalty
        if adapter_dir is not None or model == TUNED_MODEL_ID:
            from ..finetuning.llm_lora import adapter_runtime, shipped_adapter_dir

            self.llm = adapter_runtime(adapter_dir or shipped_adapter_dir(), precision, cache_dir=cache_dir)
        else:
            self.llm = load_default_model()  # onnxruntime-genai; EFSORA_LLM_RUNTIME=transformers: the loop

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def prompt_for(self, request: ChatRequest) -> tuple[str, dict | None, bool]:
        """The exact prompt text, the schema that constrains the answer, and whether it is a
        tool-call schema."""
        tools = request.tools if request.tool_choice != "none" else []
        messages = request.messages
        if request.response_schema is not None and not tools:
            # Constraining guarantees the shape; telling the model the shape makes the content better.
            messages = [*messages[:-1], Message(role="system", content=schema_instruction(request.response_schema)),
                        messages[-1]]
        prompt = self.llm.render(to_chat_dicts(messages, tools))
        if tools:
            return prompt, bounded_ints_as_enums(tool_call_schema(tools, request.tool_choice)), True
        return prompt, bounded_ints_as_enums(request.response_schema), False

    def _run(self, request: ChatRequest, on_text=None) -> ChatResponse:
        prompt, schema, is_tool_schema = self.prompt_for(request)
        prompt_tokens = self.llm.count_tokens(prompt)
        if prompt_tokens + request.max_tokens > self.llm.context_window:
            raise ContextWindowError(prompt_tokens, request.max_tokens, self.llm.context_window, self.model_id)
        t0 = time.perf_counter()
        gen = self.llm.generate(
            prompt,
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            json_schema=schema,
            json_mode=request.json_mode and schema is None,
            stop=request.stop or None,
            repetition_penalty=self.repetition_penalty,
            on_text=None if is_tool_schema else on_text,
        )
        text, calls, finish = gen.text, [], gen.finish_reason
        if is_tool_schema and finish == "stop":
            data = json.loads(gen.text)
            if "tool" in data:
                call_id = "call_" + hashlib.sha256(
                    f"{len(request.messages)}:{gen.text}".encode()).hexdigest()[:12]
                calls = [ToolCall(id=call_id, name=data["tool"], arguments=data["arguments"])]
                text, finish = "", "tool_calls"
            else:
                text = data["answer"]
                if on_text and text:
                    on_text(text)
        return ChatResponse(
            provider=self.name,
            model=self.model_id,
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=gen.prompt_tokens, output_tokens=len(gen.token_ids)),
            finish_reason=finish,
            latency_s=time.perf_counter() - t0,
            first_token_s=gen.first_token_s,
        )

    def complete(self, request: ChatRequest) -> ChatResponse:
        return self._run(request)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        events: queue.Queue = queue.Queue()

        def work():
            try:
                events.put(("done", self._run(request, on_text=lambda d: events.put(("text", d)))))
            except BaseException as exc:  # re-raised in the consumer's thread
                events.put(("error", exc))

        threading.Thread(target=work, daemon=True).start()
        while True:
            kind, item = events.get()
            if kind == "text":
                yield StreamEvent(type="text", text=item)
            elif kind == "done":
                yield StreamEvent(type="done", response=item)
                return
            else:
                raise item
