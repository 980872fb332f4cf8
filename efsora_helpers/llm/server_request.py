"""The Chat Completions request body the loopback server accepts, and why it rejects the rest.

The body is a pydantic model, so FastAPI checks types and ranges before any code runs and the
server's OpenAPI document (``/openapi.json``) shows the contract. What one field cannot check alone
(a ``tool_choice`` naming a tool that is not offered, a JSON Schema that does not compile or has a
``$ref`` that does not resolve) is checked by :func:`check_request` before the provider runs.
Every rejection becomes one :class:`RequestError`: one line that names the parameter and says what
to send instead, returned as HTTP 400 in OpenAI's error shape (see ``server.py``). Chapter 6's
production API reuses the habit. Taught in ``notebooks/reasoner/01_client.ipynb``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, field_validator

# OpenAI's pattern for tool and schema names.
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_STOP = 4  # OpenAI's limit on stop sequences
# The local runtimes take a 32-bit seed; a bigger one would overflow inside the engine.
MAX_SEED = 2**31 - 1
# Deeper schemas would exhaust Python's recursion in the checks (and no real schema comes close).
MAX_SCHEMA_DEPTH = 100

Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # a JSON number, never a string or bool


class RequestError(ValueError):
    """A request the caller must fix: ``message`` says what is wrong, ``param`` where (OpenAI's field)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        self.message, self.param, self.code = message, param, code
        super().__init__(message)


class _Open(BaseModel):
    # Nested objects keep fields this server ignores (``name``, ``refusal``, ``annotations``...):
    # the SDK puts them on the messages it returns, and clients send those messages back.
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: StrictStr
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Open):
    type: Literal["text", "image_url", "refusal"]
    text: StrictStr | None = None
    image_url: ImageURL | None = None
    refusal: StrictStr | None = None


class FunctionCall(_Open):
    name: StrictStr
    arguments: StrictStr = Field(description="the arguments as a JSON string, as the model wrote them")


class ToolCallIn(_Open):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, value):
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError(f"must be a string or a list of content parts, not {_json_type(value)}")
        return value


class FunctionDef(_Open):
    name: StrictStr = Field(pattern=NAME_PATTERN)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON Schema of type object")
    strict: StrictBool | None = None


class ToolIn(_Open):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Open):
    name: StrictStr


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Open):
    name: StrictStr = Field("response", pattern=NAME_PATTERN)
    description: StrictStr | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="a JSON Schema; local $refs only")
    strict: StrictBool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class ChatCompletionBody(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's parameters this server implements, plus a few it
    accepts at their neutral value. An unknown top-level parameter is rejected, as OpenAI does, so a
    typo such as ``max_token`` is reported instead of silently ignored."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = Field(None, description="optional: this server serves one model")
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, gt=0, le=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(None, description="must be 1: one choice per request")
    # Accepted at their neutral value only (OpenAI clients often send them explicitly).
    frequency_penalty: Number | None = Field(None, ge=-2, le=2)
    presence_penalty: Number | None = Field(None, ge=-2, le=2)
    logprobs: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None  # at most one call per turn either way
    user: StrictStr | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_shape(cls, value):
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError(f"must be a string or a list of up to {MAX_STOP} strings, not {_json_type(value)}")
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences, got {len(value)}")
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice_shape(cls, value):
        if value is None or value in ("auto", "none", "required") or isinstance(value, dict):
            return value
        raise ValueError(f"must be 'auto', 'none', 'required' or "
                         f'{{"type": "function", "function": {{"name": ...}}}}, not {_short(value)}')


# ---- checks across fields, after the types are right ----------------------------------------------
_PARTS_BY_ROLE = {"system": {"text"}, "developer": {"text"}, "tool": {"text"},
                  "user": {"text", "image_url"}, "assistant": {"text", "refusal"}}


def check_request(body: ChatCompletionBody) -> None:
    """Raise :class:`RequestError` for what the field types cannot see; return when the request is sound."""
    for i, message in enumerate(body.messages):
        _check_message(message, f"messages[{i}]")
    if body.n is not None and body.n != 1:
        raise RequestError(f"n={body.n}: this server returns one choice per request; send n=1 or omit it "
                           "(call it again for more answers)", "n")
    for param in ("frequency_penalty", "presence_penalty"):
        if getattr(body, param):
            raise RequestError(f"{param} is not supported by this server; send 0 or omit it", param)
    if body.logprobs:
        raise RequestError("logprobs is not supported by this server; send false or omit it", "logprobs")
    if body.stream_options is not None and not body.stream:
        raise RequestError("stream_options is only allowed with stream: true", "stream_options")
    if isinstance(body.stop, list) and any(not s for s in body.stop) or body.stop == "":
        raise RequestError("stop sequences must be non-empty strings", "stop")
    names = _check_tools(body.tools or [])
    _check_tool_choice(body.tool_choice, names)
    fmt = body.response_format
    if fmt is not None:
        if fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise RequestError('response_format of type json_schema needs "json_schema": '
                                   '{"name": ..., "schema": {...}}', "response_format.json_schema")
            check_json_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")
        elif fmt.json_schema is not None:
            raise RequestError(f"response_format.json_schema is only allowed with type json_schema, "
                               f"not {fmt.type!r}", "response_format.json_schema")


def _check_message(message: ChatMessage, param: str) -> None:
    role = message.role
    if message.content is None and role != "assistant":
        raise RequestError(f"{param}: a {role} message needs content (a string or a list of content parts)",
                           f"{param}.content")
    for j, part in enumerate(message.content if isinstance(message.content, list) else []):
        where = f"{param}.content[{j}]"
        if part.type not in _PARTS_BY_ROLE[role]:
            allowed = " and ".join(sorted(_PARTS_BY_ROLE[role]))
            raise RequestError(f"{where}: a {role} message takes {allowed} parts, not {part.type}", where)
        value = getattr(part, part.type)
        if value is None:
            raise RequestError(f'{where}: a {part.type} part needs its "{part.type}" field', f"{where}.{part.type}")
        if part.type == "image_url" and not (value.url.startswith("data:") and ";base64," in value.url):
            raise RequestError(f"{where}: send the image inline as a data URL (data:image/png;base64,...); "
                               "this server never fetches URLs", f"{where}.image_url.url")
    if role == "tool" and not message.tool_call_id:
        raise RequestError(f"{param}: a tool message needs the tool_call_id of the call it answers",
                           f"{param}.tool_call_id")
    if message.tool_calls and role != "assistant":
        raise RequestError(f"{param}: only assistant messages carry tool_calls", f"{param}.tool_calls")


def _check_tools(tools: list[ToolIn]) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools):
        fn, param = tool.function, f"tools[{i}].function"
        if fn.name in names:
            raise RequestError(f"{param}.name: two tools are named {fn.name!r}; tool names must be unique",
                               f"{param}.name")
        names.add(fn.name)
        if fn.parameters:  # absent or {}: a tool without arguments
            if fn.parameters.get("type") != "object":
                raise RequestError(f'{param}.parameters: must be a JSON Schema with "type": "object" '
                                   f"(the arguments object), not type {_short(fn.parameters.get('type'))}",
                                   f"{param}.parameters")
            check_json_schema(fn.parameters, f"{param}.parameters")
    return names


def _check_tool_choice(choice: str | NamedToolChoice | None, names: set[str]) -> None:
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            offered = ", ".join(sorted(names)) or "none"
            raise RequestError(f"tool_choice names {choice.function.name!r}, which is not in tools "
                               f"(offered: {offered})", "tool_choice")
    elif choice == "required" and not names:
        raise RequestError("tool_choice 'required' needs at least one tool in tools", "tool_choice")


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_DATA_KEYWORDS = ("enum", "const", "examples", "default")  # JSON values, not subschemas


def check_json_schema(schema: dict[str, Any], param: str) -> None:
    """A valid JSON Schema (checked against its meta-schema) whose every ``$ref`` resolves locally.

    A remote ``$ref`` is refused, never fetched: the server runs offline and must not make requests
    on a caller's behalf.
    """
    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema

    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise RequestError(f"{param}: nested {depth} levels deep; this server accepts at most {MAX_SCHEMA_DEPTH}",
                           param)
    if not isinstance(schema.get("$schema", ""), str):
        raise RequestError(f"{param}.$schema: must be a meta-schema URI string, such as "
                           "'https://json-schema.org/draft/2020-12/schema'", param)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        raise RequestError(f"{param}{where}: not a valid JSON Schema: {_short(exc.message, 160)}", param) from None

    def refuse(uri: str):
        raise LookupError(uri)  # referencing reports it as Unretrievable

    spec = referencing.jsonschema.specification_with(cls.META_SCHEMA.get("$schema", ""),
                                                     default=referencing.jsonschema.DRAFT202012)
    root = referencing.Resource(contents=schema, specification=spec)
    base = root.id() or "urn:efsora:request-schema"
    resolver = referencing.Registry(retrieve=refuse).with_resource(base, root).resolver(base_uri=base)

    def walk(node: Any, resolver) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, resolver)
            return
        if not isinstance(node, dict):  # a boolean schema has no refs
            return
        if isinstance(node.get("$id"), str) and node is not schema:
            resolver = resolver.in_subresource(referencing.Resource(contents=node, specification=spec))
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            try:
                target = resolver.lookup(ref).contents
            except ValueError:  # a pointer that indexes an array with a word, a malformed URI
                target = None
            except referencing.exceptions.Unresolvable as exc:
                fetch = referencing.exceptions.Unretrievable
                if isinstance(exc, fetch) or isinstance(exc.__cause__, fetch):
                    raise RequestError(f"{param}: $ref {_short(ref)} points outside the schema; this server "
                                       "never fetches schemas: put the definition under $defs and use "
                                       "'#/$defs/Name'", param) from None
                target = None
            if not isinstance(target, (dict, bool)):
                raise RequestError(f"{param}: $ref {_short(ref)} does not resolve to a schema within the schema; "
                                   "define it under $defs (e.g. '#/$defs/Name') or fix the pointer", param)
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, dict):  # names -> subschemas: a name may be "$ref"
                for sub in value.values():
                    walk(sub, resolver)
            elif key not in _DATA_KEYWORDS:
                walk(value, resolver)

    walk(schema, resolver)


# ---- pydantic's errors as one OpenAI-style line -----------------------------------------------------
def error_from_validation(errors: list[dict[str, Any]]) -> RequestError:
    """The most specific of pydantic's errors as one line that names the parameter."""
    # A union reports one error per branch; the deepest is the one about what the caller meant.
    err = max(errors, key=lambda e: len(_path(e["loc"])))
    path, kind = _path(err["loc"]), err["type"]
    param = _param(path)
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        return RequestError(f"the request body is not valid JSON ({err.get('ctx', {}).get('error', msg)}); "
                            "send a JSON object with model and messages")
    if not path and isinstance(err.get("input"), bytes):  # FastAPI passes a body it could not decode as is
        return RequestError("the request body is not JSON; send a JSON object with model and messages "
                            "(Content-Type: application/json)")
    if not path and kind in ("missing", "model_attributes_type", "dict_type", "model_type"):
        return RequestError("the request body must be a JSON object with model and messages, "
                            f"not {_json_type(err.get('input'))}")
    if kind == "extra_forbidden" and len(path) == 1:
        known = ", ".join(ChatCompletionBody.model_fields)
        return RequestError(f"unrecognized request argument {path[0]!r}; this server accepts: {known}", param)
    if kind == "missing":
        return RequestError(f"missing required parameter {param!r}", param)
    if kind == "too_short" and path == ["messages"]:
        return RequestError("messages must hold at least one message, e.g. "
                            '[{"role": "user", "content": "..."}]', param)
    if kind.endswith("_type") or kind in ("literal_error", "finite_number", "enum"):
        msg += f" (got {_short(err.get('input'))})"
    return RequestError(f"{param}: {msg}", param)


def _path(loc: tuple) -> list:
    """The location without FastAPI's ``body`` prefix and without pydantic's union-branch labels
    (``str``, ``list[ContentPart]``, ``NamedToolChoice``, ``literal[...]``)."""
    out = list(loc[1:] if loc and loc[0] == "body" else loc)
    return [p for p in out if isinstance(p, int) or not (
        p in ("str", "int", "float", "bool", "none") or "[" in p or p[:1].isupper())]


def _param(path: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "body"


def _depth(value: Any) -> int:
    """How deeply JSON containers nest (iterative: the point is to refuse what recursion cannot take)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a deeply nested value
        return _json_type(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
