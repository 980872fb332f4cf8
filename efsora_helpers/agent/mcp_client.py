"""An MCP client for notebooks and agents: connect, list, call, and turn any server's tools into agent tools.

:class:`MCPClient` holds one connection of the official ``mcp`` SDK (``mcp.Client``) to a server
reached over **stdio** (the client spawns the server and speaks JSON-RPC on its stdin/stdout; by
default ``python -m efsora_helpers.cli mcp serve``, but any command works) or **streamable HTTP**
(a URL such as ``http://127.0.0.1:8765/mcp``). The SDK is async; a notebook cell and a LangGraph
node are not, so the connection lives on its own event-loop thread and every method here is a
plain blocking call (``acall_tool`` for async callers).

Tools from *any* MCP server become agent tools two ways, without ``langchain-mcp-adapters``:

* :meth:`MCPClient.langchain_tools`: LangChain ``StructuredTool`` objects whose ``args_schema`` is
  the server's JSON Schema as sent (so ``bind_tools`` shows the model exactly what the server
  published); a tool error comes back as an error ``ToolMessage``, not an exception.
* :meth:`MCPClient.registry`: the book's own :class:`~efsora_helpers.llm.tools.ToolRegistry`, with
  an arguments model built from the schema (:func:`model_from_schema`) so bad arguments are
  caught before they travel, and ``side_effects`` set for every tool the server does not declare
  ``readOnlyHint: true`` (the MCP default for an unannotated tool is "may be destructive", and
  annotations from a server you do not trust are only hints).

Side-effect tools on the book's server ask for approval through MCP elicitation: pass
``approve=`` (a function of the server's question returning True/False, e.g. :func:`ask_on_terminal`).
Without it the client declares no elicitation capability and the server refuses those tools. An
agent whose own graph already paused for the person (notebook 06) may pass :func:`approve_all`:
its approval node runs before any side-effect call reaches the client. Taught in
``notebooks/agent/07_mcp.ipynb``; the server is :mod:`.mcp_server`.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, Field, create_model

from ..llm.tools import Tool, ToolRegistry
from ..llm.types import ToolSpec

Approver = Callable[[str], bool]


def approve_all(message: str) -> bool:
    return True


def deny_all(message: str) -> bool:
    return False


def ask_on_terminal(message: str) -> bool:
    """Show the server's question and read y/n from standard input (no input: no)."""
    try:
        return input(f"{message} [y/N] ").strip().lower() in {"y", "yes"}
    except EOFError:
        return False


@dataclass
class CallResult:
    """One ``tools/call`` answer: the text a model reads, structured content if any, and the error flag."""

    tool: str
    text: str
    structured: dict[str, Any] | None
    is_error: bool
    seconds: float

    @property
    def value(self) -> Any:
        """Structured content, else the text parsed as JSON when it is JSON, else the text."""
        if self.structured is not None:
            return self.structured
        try:
            return json.loads(self.text)
        except ValueError:
            return self.text


class RemoteToolError(RuntimeError):
    """A tool on the MCP server answered with ``isError: true``; the message is the server's."""


def serve_command(*args: str) -> list[str]:
    """The command that starts this book's server over stdio: ``python -m efsora_helpers.cli mcp serve ...``."""
    return [sys.executable, "-m", "efsora_helpers.cli", "mcp", "serve", *args]


@contextmanager
def http_server(*serve_args: str, port: int | None = None, host: str = "127.0.0.1", startup_s: float = 90.0,
                command: list[str] | None = None):
    """Start ``efsora mcp serve --http`` (or ``command``) on a free loopback port; yield its URL; stop it.

    Waits until the port accepts connections. The server's log goes to a temporary file that is
    printed if it fails to start.
    """
    import socket
    import subprocess
    import tempfile

    from .mcp_server import free_port

    port = port or free_port(host)
    cmd = command or serve_command("--http", "--host", host, "--port", str(port), *serve_args)
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # If this process ends before the context exits (a notebook kernel shut down mid-way), the
        # server must not outlive it.
        stop = functools.partial(_stop_process, proc)  # its own object: unregistered alone below
        atexit.register(stop)
        try:
            deadline = time.monotonic() + startup_s
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"MCP server exited with code {proc.returncode}: {log.read()[-500:]}")
                try:
                    with socket.create_connection((host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"MCP server did not listen on {host}:{port} within {startup_s:.0f} s")
                    time.sleep(0.1)
            yield f"http://{host}:{port}/mcp"
        finally:
            stop()
            atexit.unregister(stop)


def _stop_process(proc) -> None:
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class MCPClient:
    """A blocking handle on one MCP connection (use as a context manager, or call :meth:`close`).

    ``target``: a URL (streamable HTTP), a command list (stdio; the server process gets this
    process's environment, so offline settings and ``EFSORA_HOME`` carry over), or an
    ``MCPServer`` object (in-process, no transport: for tests and for measuring what a transport
    costs). ``approve`` answers the server's approval questions (elicitation). ``mode``: ``"auto"``
    (the SDK probes the server's protocol era) or ``"legacy"`` (the pre-2026 initialize handshake).
    ``timeout``: seconds to connect and per call.
    """

    def __init__(self, target: Any, *, approve: Approver | None = None, mode: str = "auto",
                 env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 120.0):
        self.target = target
        self.transport = "http" if isinstance(target, str) else "stdio" if isinstance(target, list) else "memory"
        self.approve = approve
        self.mode = mode
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.approvals: list[tuple[str, bool]] = []  # every question the server asked, and the answer
        self.calls: list[CallResult] = []  # every tools/call made through this connection, in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client = None
        self._stop: asyncio.Event | None = None
        self._tools: list | None = None

    # -- connection on a private event-loop thread ------------------------------------------------
    def _server_spec(self):
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        if self.transport != "stdio":
            return self.target  # a URL, or an in-process server object (the SDK connects to it directly)
        command, *args = self.target
        env = dict(os.environ) if self.env is None else self.env
        params = StdioServerParameters(command=command, args=args, env=env, cwd=self.cwd)
        return stdio_client(params, errlog=_errlog())

    async def _elicit(self, context, params):
        import mcp.types as types

        message = getattr(params, "message", "")
        ok = bool(self.approve(message))
        self.approvals.append((message, ok))
        schema = getattr(params, "requested_schema", None) or {}
        if ok and "approve" in schema.get("properties", {}):
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(action="decline")

    async def _main(self, ready: Future) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            # Without an approver the client declares no elicitation capability: the server then
            # refuses side effects with its own message instead of asking a question nobody answers.
            elicit = self._elicit if self.approve is not None else None
            async with Client(self._server_spec(), elicitation_callback=elicit, mode=self.mode,
                              read_timeout_seconds=self.timeout) as client:
                self._client = client
                ready.set_result(True)
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the opener, or lost at shutdown
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        finally:
            self._client = None

    def open(self) -> "MCPClient":
        if self._thread is not None:
            return self
        ready: Future = Future()
        self._loop = asyncio.new_event_loop()

        tasks: list[asyncio.Task] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            tasks.append(self._loop.create_task(self._main(ready)))
            self._loop.run_until_complete(tasks[0])

        self._thread = threading.Thread(target=run, name="mcp-client", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=self.timeout)
        except BaseException as exc:
            if tasks:  # a server that never answers: cancel the handshake (this also stops a spawned process)
                self._loop.call_soon_threadsafe(tasks[0].cancel)
            self._thread.join(timeout=10)
            self._thread = None
            timed_out = isinstance(exc, TimeoutError)
            reason = f"no answer within {self.timeout:.0f} s" if timed_out else _first_error(exc)
            raise ConnectionError(f"could not connect to MCP server {self.describe()}: {reason}") from exc
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> "MCPClient":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        if self.transport == "memory":
            return f"in-process {type(self.target).__name__}"
        return self.target if self.transport == "http" else " ".join(map(str, self.target))

    def _run(self, coro_fn, *args, **kwargs):
        if self._client is None:
            raise RuntimeError("the MCP client is not connected: use `with MCPClient(...) as c:` or .open()")
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args, **kwargs), self._loop)
        return fut.result(timeout=self.timeout)

    # -- the protocol -----------------------------------------------------------------------------
    @property
    def protocol_version(self) -> str:
        return self._client.protocol_version

    @property
    def server_name(self) -> str | None:
        info = self._client.server_info
        return info.name if info is not None else None

    def list_tools(self, refresh: bool = False) -> list:
        """Every tool the server offers (``mcp.types.Tool``: name, description, input_schema, annotations)."""
        if self._tools is None or refresh:
            async def all_pages():
                tools, cursor = [], None
                while True:
                    page = await self._client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        return tools

            self._tools = self._run(all_pages)
        return self._tools

    async def _call(self, name: str, arguments: dict[str, Any] | None) -> CallResult:
        start = time.perf_counter()
        result = await self._client.call_tool(name, arguments or {})
        texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
        out = CallResult(name, "\n".join(texts), result.structured_content, bool(result.is_error),
                         time.perf_counter() - start)
        self.calls.append(out)
        return out

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallResult:
        """Call one tool. A tool's failure is ``CallResult.is_error``; a protocol failure raises ``MCPError``."""
        return self._run(self._call, name, arguments)

    async def acall_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallResult:
        """``call_tool`` for async callers (runs on the connection's loop, awaited from yours)."""
        if self._client is None:
            raise RuntimeError("the MCP client is not connected")
        fut = asyncio.run_coroutine_threadsafe(self._call(name, arguments), self._loop)
        return await asyncio.wrap_future(fut)

    # -- the server's tools as agent tools --------------------------------------------------------
    def _value_or_raise(self, name: str, arguments: dict[str, Any]) -> Any:
        out = self.call_tool(name, arguments)
        if out.is_error:
            raise RemoteToolError(out.text)
        return out.value

    def registry(self, names: list[str] | None = None) -> ToolRegistry:
        """The server's tools as a chapter 2 ``ToolRegistry`` (each call travels over this connection)."""
        registry = ToolRegistry()
        for t in self.list_tools():
            if names is not None and t.name not in names:
                continue
            schema = dict(t.input_schema)
            spec = ToolSpec(name=t.name, description=t.description or t.title or t.name, parameters=schema)
            fn = _remote_function(self, t.name, schema)
            registry.tools[t.name] = Tool(t.name, fn, spec, model_from_schema(t.name, schema),
                                          side_effects=not is_read_only(t))
        return registry

    def langchain_tools(self, names: list[str] | None = None) -> list:
        """The server's tools as LangChain ``StructuredTool`` objects with the server's JSON Schemas."""
        from langchain_core.tools import StructuredTool, ToolException

        out = []
        for t in self.list_tools():
            if names is not None and t.name not in names:
                continue

            def call(_name=t.name, **kwargs):
                res = self.call_tool(_name, kwargs)
                if res.is_error:
                    raise ToolException(res.text)  # handle_tool_error: the model reads it as an error message
                return res.text

            async def acall(_name=t.name, **kwargs):
                res = await self.acall_tool(_name, kwargs)
                if res.is_error:
                    raise ToolException(res.text)
                return res.text

            out.append(StructuredTool(
                name=t.name, description=t.description or t.name, args_schema=dict(t.input_schema),
                func=call, coroutine=acall, handle_tool_error=True,
                metadata={"mcp_server": self.describe(), "read_only": is_read_only(t)}))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return str(value)


def _errlog():
    """Where a stdio server's stderr goes: ours if it is a real file (a terminal, a log), else the
    process's original stderr (a Jupyter kernel's ``sys.stderr`` has no file descriptor to hand on)."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server process


def _remote_function(client: MCPClient, name: str, schema: dict) -> Callable[..., Any]:
    required = set(schema.get("required", []))

    def call(**kwargs: Any) -> Any:
        # The local model filled absent optional arguments with None: leave them out, so the server
        # applies its own defaults (its schema may not allow null); nested models go as plain JSON.
        arguments = {k: v for k, v in kwargs.items() if v is not None or k in required}
        arguments = json.loads(json.dumps(arguments, default=_jsonable))
        return client._value_or_raise(name, arguments)

    call.__name__ = name
    return call


def _first_error(exc: BaseException) -> str:
    """The innermost useful message of an exception (groups from anyio task groups included)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def is_read_only(tool) -> bool:
    """True only when the server declares ``readOnlyHint: true`` (MCP's default is "may have side effects")."""
    ann = getattr(tool, "annotations", None)
    return bool(ann is not None and ann.read_only_hint)


# -- JSON Schema -> pydantic (what tool schemas use; anything else validates as Any) ---------------
_SIMPLE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


def _resolve_ref(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if not ref or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {})
    return {**node, **{k: v for k, v in schema.items() if k != "$ref"}}


def _python_type(schema: dict, root: dict, name: str) -> Any:
    schema = _resolve_ref(schema, root)
    if "enum" in schema:
        return Literal[tuple(schema["enum"])]
    if "const" in schema:
        return Literal[schema["const"]]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = tuple(_python_type(s, root, name) for s in schema[key])
            return options[0] if len(options) == 1 else typing_union(options)
    kind = schema.get("type")
    if isinstance(kind, list):
        return typing_union(tuple(_python_type({**schema, "type": k}, root, name) for k in kind))
    constraints = {}
    for json_key, py_key in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"),
                             ("exclusiveMaximum", "lt"), ("minLength", "min_length"),
                             ("maxLength", "max_length"), ("pattern", "pattern"), ("minItems", "min_length"),
                             ("maxItems", "max_length")):
        if json_key in schema and not isinstance(schema[json_key], bool):
            constraints[py_key] = schema[json_key]
    if kind in _SIMPLE:
        base = _SIMPLE[kind]
    elif kind == "array":
        base = list[_python_type(schema.get("items", {}), root, name)]
    elif kind == "object" and "properties" in schema:
        base = model_from_schema(f"{name}_item", schema, root)
    elif kind == "object":
        base = dict[str, Any]
    else:
        return Any
    return Annotated[base, Field(**constraints)] if constraints else base


def typing_union(options: tuple) -> Any:
    from typing import Union

    return Union[options]  # noqa: UP007 - built from a runtime tuple


def model_from_schema(name: str, schema: dict, root: dict | None = None) -> type[BaseModel]:
    """A pydantic model that validates what ``schema`` (an object JSON Schema) describes.

    Covers what tool schemas use: scalar types, enums, arrays, nested objects and ``$ref``,
    ``anyOf`` (optional values), numeric and length bounds, defaults, and
    ``additionalProperties: false``. Keywords it does not know are not checked here; the server
    still validates every call.
    """
    root = root or schema
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for prop, sub in schema.get("properties", {}).items():
        py = _python_type(sub, root, f"{name}_{prop}")
        default = ... if prop in required else sub.get("default", None)
        fields[prop] = (py if prop in required or default is not None else py | None,
                        Field(default, description=sub.get("description")))
    extra = "forbid" if schema.get("additionalProperties") is False else "allow"
    return create_model(f"{name}_arguments", __config__={"extra": extra}, **fields)


__all__ = ["CallResult", "MCPClient", "RemoteToolError", "approve_all", "ask_on_terminal", "deny_all",
           "http_server", "is_read_only", "model_from_schema", "serve_command"]
