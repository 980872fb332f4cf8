"""The MCP server and client (efsora_helpers.agent.mcp_server / mcp_client).

Fast tests connect in-process (the SDK's direct transport) to a server built on a small registry
of this file: a calculator and a fake forklift switch that records what it did. Slow tests start
real processes: ``efsora mcp serve`` over stdio, and over streamable HTTP on a free loopback port.
"""

from __future__ import annotations

import ast
import json
import operator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from efsora_helpers.agent import mcp_client as mc
from efsora_helpers.agent import mcp_server as ms
from efsora_helpers.llm.tools import ToolRegistry


def small_registry(log: Path) -> ToolRegistry:
    """A calculator and a fake side-effect tool that appends to ``log`` (so a test sees if it ran)."""
    registry = ToolRegistry()
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    @registry.tool
    def calculator(expression: Annotated[str, Field(max_length=100)]) -> dict:
        """Compute an arithmetic expression.

        Args:
            expression: numbers with + - * / and parentheses
        """
        def ev(node):
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
                return node.value
            if isinstance(node, ast.BinOp) and type(node.op) in ops:
                return ops[type(node.op)](ev(node.left), ev(node.right))
            raise ValueError("only arithmetic")

        return {"value": ev(ast.parse(expression, mode="eval").body)}

    @registry.tool(side_effects=True)
    def fake_stop_line(zone: Literal["A", "B"], reason: str = "test") -> dict:
        """Stop the (fake) forklift line in a zone.

        Args:
            zone: the zone
            reason: why
        """
        with log.open("a") as f:
            f.write(json.dumps({"zone": zone, "reason": reason}) + "\n")
        return {"stopped": zone}

    return registry


@pytest.fixture
def log(tmp_path) -> Path:
    return tmp_path / "actions.jsonl"


@pytest.fixture
def registry(log) -> ToolRegistry:
    return small_registry(log)


def connect(registry, actions="ask", approve=None, mode="auto"):
    return mc.MCPClient(ms.make_server(registry, actions=actions), approve=approve, mode=mode, timeout=30)


def test_tools_listed_from_the_registry(registry):
    with connect(registry) as c:
        tools = {t.name: t for t in c.list_tools()}
    assert list(tools) == list(registry.tools)
    for name, tool in registry.tools.items():
        assert tools[name].input_schema == tool.parameters  # the registry's schema, not a second copy
        assert tools[name].description == tool.description
    assert tools["calculator"].annotations.read_only_hint is True
    assert tools["fake_stop_line"].annotations.read_only_hint is False
    assert tools["fake_stop_line"].annotations.destructive_hint is True


def test_call_equals_registry_call(registry):
    with connect(registry) as c:
        out = c.call_tool("calculator", {"expression": "(2 + 3) * 4"})
    direct = registry.call("calculator", arguments={"expression": "(2 + 3) * 4"})
    assert not out.is_error and out.text == direct.content and out.structured == direct.value == {"value": 20}


def test_errors_are_tool_results(registry):
    with connect(registry) as c:
        unknown = c.call_tool("no_such_tool", {})
        bad = c.call_tool("calculator", {"expression": 12})
        missing = c.call_tool("calculator", {})
        failing = c.call_tool("calculator", {"expression": "__import__('os')"})
        still_up = c.call_tool("calculator", {"expression": "1+1"})
    assert unknown.is_error and "no_such_tool" in unknown.text
    assert bad.is_error and bad.text.startswith("invalid arguments for calculator: expression")
    assert missing.is_error and "Field required" in missing.text
    assert failing.is_error and "only arithmetic" in failing.text
    assert not still_up.is_error and still_up.structured == {"value": 2}


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 InputRequiredResult, and 2025-11-25 mid-call
def test_side_effect_asks_the_person(registry, log, mode):
    asked = []

    def approve(message):
        asked.append(message)
        return "zone='A'" in message  # yes to zone A, no to zone B

    with connect(registry, approve=approve, mode=mode) as c:
        ok = c.call_tool("fake_stop_line", {"zone": "A", "reason": "pallet in lane"})
        no = c.call_tool("fake_stop_line", {"zone": "B"})
    assert not ok.is_error and ok.structured == {"stopped": "A"}
    assert no.is_error and "not approved" in no.text
    assert len(asked) == 2 and "fake_stop_line(zone='A', reason='pallet in lane')" in asked[0]
    assert [json.loads(line)["zone"] for line in log.read_text().splitlines()] == ["A"]


def test_bad_arguments_are_not_put_to_the_person(registry, log):
    asked = []
    with connect(registry, approve=lambda m: asked.append(m) or True) as c:
        out = c.call_tool("fake_stop_line", {"zone": "Z"})
        missing = c.call_tool("fake_stop_line", {})
    assert out.is_error and out.text.startswith("invalid arguments for fake_stop_line: zone")
    assert missing.is_error and "Field required" in missing.text
    assert asked == [] and not log.exists()


def test_side_effect_refused_without_a_way_to_ask(registry, log):
    with connect(registry, approve=None) as c:  # no elicitation capability declared
        out = c.call_tool("fake_stop_line", {"zone": "A"})
    assert out.is_error and "cannot ask" in out.text and "--actions allow" in out.text
    assert not log.exists()


def test_actions_allow_and_deny(registry, log):
    with connect(registry, actions="deny", approve=mc.approve_all) as c:
        denied = c.call_tool("fake_stop_line", {"zone": "A"})
    assert denied.is_error and not log.exists()
    with connect(registry, actions="allow") as c:
        allowed = c.call_tool("fake_stop_line", {"zone": "B"})
    assert not allowed.is_error and log.read_text().count("\n") == 1
    with pytest.raises(ValueError):
        ms.make_server(registry, actions="maybe")


def test_client_registry_from_server(registry, log):
    with connect(registry, approve=mc.deny_all) as c:
        remote = c.registry()
        assert remote.side_effect_tools() == ["fake_stop_line"]
        assert remote.specs() == registry.specs()
        assert remote.call("calculator", arguments={"expression": "6*7"}) == registry.call(
            "calculator", arguments={"expression": "6*7"})
        # Validated locally by the model built from the schema: never sent.
        bad = remote.call("fake_stop_line", arguments={"zone": "Z"})
        assert bad.is_error and bad.value.startswith("invalid arguments for fake_stop_line: zone")
        refused = remote.call("fake_stop_line", arguments={"zone": "A"})
        assert refused.is_error and "RemoteToolError" in refused.value
    assert not log.exists()


def test_langchain_tools(registry):
    with connect(registry) as c:
        tools = {t.name: t for t in c.langchain_tools()}
        assert tools["calculator"].args_schema == registry.tools["calculator"].parameters
        assert json.loads(tools["calculator"].invoke({"expression": "2*21"})) == {"value": 42}
        error = tools["calculator"].invoke({"expression": "x"})
    assert "only arithmetic" in error


def test_model_from_schema():
    schema = {"type": "object", "additionalProperties": False, "required": ["zone", "n"],
              "properties": {"zone": {"enum": ["A", "B"]}, "n": {"type": "integer", "minimum": 1, "maximum": 5},
                             "note": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]},
                             "tags": {"type": "array", "items": {"type": "string"}, "default": []}}}
    model = mc.model_from_schema("t", schema)
    assert model.model_validate({"zone": "A", "n": 3}).tags == []
    for bad in ({"zone": "C", "n": 3}, {"zone": "A", "n": 9}, {"zone": "A", "n": 1, "note": "too long"},
                {"zone": "A", "n": 1, "extra": 1}, {"n": 1}):
        with pytest.raises(Exception):
            model.model_validate(bad)


def test_loopback_only(capsys):
    from efsora_helpers.cli import main

    assert ms.is_loopback("127.0.0.1") and ms.is_loopback("localhost") and ms.is_loopback("::1")
    assert not ms.is_loopback("0.0.0.0") and not ms.is_loopback("192.168.1.5")
    assert main(["mcp", "serve", "--http", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("efsora: error: refusing to serve on 0.0.0.0") and "\n" not in err


def test_port_in_use_is_one_line(capsys):
    import socket

    from efsora_helpers.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["mcp", "serve", "--http", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"efsora: error: cannot listen on 127.0.0.1:{port}") and "\n" not in err


@pytest.mark.slow
def test_stdio_real_server(tmp_path):
    """``python -m efsora_helpers.cli mcp serve`` spawned by the client: the warehouse tools over stdio."""
    from efsora_helpers.agent.tools import warehouse_tools

    direct = warehouse_tools(tmp_path / "direct")
    with mc.MCPClient(mc.serve_command("--workspace", str(tmp_path / "ws")), approve=mc.deny_all) as c:
        tools = c.list_tools()
        calc = c.call_tool("calculator", {"expression": "(12 + 8) * 0.15"})
        unknown = c.call_tool("launch_rocket", {})
        refused = c.call_tool("stop_forklift_line", {"zone": "dock 3", "reason": "test"})
    assert [t.name for t in tools] == list(direct.tools)
    assert [t.input_schema for t in tools] == [t.parameters for t in direct.tools.values()]
    assert calc.text == direct.call("calculator", arguments={"expression": "(12 + 8) * 0.15"}).content
    assert unknown.is_error and refused.is_error and "not approved" in refused.text
    assert not (tmp_path / "ws" / "actions.jsonl").exists()


def foreign_request(url: str, headers: dict) -> int:
    import urllib.error
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    try:
        with opener.open(req, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_http_real_server(tmp_path):
    """``efsora mcp serve --http`` on a free loopback port, started and stopped by the test."""
    from efsora_helpers.agent.tools import warehouse_tools

    direct = warehouse_tools(tmp_path / "direct")
    with mc.http_server("--workspace", str(tmp_path / "ws")) as url:
        assert url.startswith("http://127.0.0.1:")
        # DNS-rebinding protection: a web page that resolves its own name to 127.0.0.1 is refused.
        assert foreign_request(url, {"Host": "attacker.example"}) == 421
        assert foreign_request(url, {"Origin": "http://attacker.example"}) == 403
        with mc.MCPClient(url, approve=mc.approve_all) as c:
            names = [t.name for t in c.list_tools()]
            calc = c.call_tool("calculator", {"expression": "2**10"})
            bad = c.call_tool("calculator", {"expression": ""})
            done = c.call_tool("stop_forklift_line", {"zone": "dock 3", "reason": "test"})
    assert names == list(direct.tools)
    assert calc.text == direct.call("calculator", arguments={"expression": "2**10"}).content
    assert bad.is_error and "invalid arguments" in bad.text
    assert not done.is_error and done.structured["stopped"] is True
    assert "stop_forklift_line" in (tmp_path / "ws" / "actions.jsonl").read_text()


def test_client_registry_sends_only_what_was_given(tmp_path):
    """Optional arguments the caller left out are not sent as null (the server's schema may forbid it)."""
    seen = []
    registry = ToolRegistry()

    @registry.tool
    def echo(text: str, k: Annotated[int, Field(ge=1, le=5)] = 3, tag: str = "none") -> dict:
        """Echo the arguments.

        Args:
            text: anything
            k: a small number
            tag: a label
        """
        seen.append({"text": text, "k": k, "tag": tag})
        return seen[-1]

    with connect(registry) as c:
        remote = c.registry()
        schema = dict(remote.tools["echo"].parameters)
        schema["properties"] = {**schema["properties"], "tag": {"type": "string"}}  # no default in a schema
        remote.tools["echo"].arguments_model = mc.model_from_schema("echo", schema)
        out = remote.call("echo", arguments={"text": "hi"})
    assert not out.is_error and out.value == {"text": "hi", "k": 3, "tag": "none"}


NOISY_SERVER = """
import sys
from efsora_helpers.agent.mcp_server import make_server
from efsora_helpers.llm.tools import ToolRegistry
registry = ToolRegistry()

@registry.tool
def noisy(text: str) -> str:
    '''Print to stdout (which is the protocol channel) and return the text.

    Args:
        text: anything
    '''
    print("stray output that must not reach the protocol")
    sys.stdout.flush()
    return text.upper()

make_server(registry).run("stdio")
"""


@pytest.mark.slow
def test_any_command_and_stdout_is_protected():
    """Any command that speaks MCP works; a tool that prints cannot corrupt the JSON-RPC stream."""
    import sys

    with mc.MCPClient([sys.executable, "-c", NOISY_SERVER]) as c:
        first = c.call_tool("noisy", {"text": "a"})
        second = c.call_tool("noisy", {"text": "b"})
    assert (first.text, second.text) == ("A", "B") and not first.is_error


@pytest.mark.slow
def test_connection_errors_are_one_clear_exception():
    import sys

    with pytest.raises(ConnectionError, match="could not connect to MCP server /no/such/server"):
        mc.MCPClient(["/no/such/server"], timeout=10).open()
    silent = mc.MCPClient([sys.executable, "-c", "import time; time.sleep(60)"], timeout=3)
    t0 = __import__("time").perf_counter()
    with pytest.raises(ConnectionError, match="no answer within 3 s"):
        silent.open()
    assert __import__("time").perf_counter() - t0 < 20
