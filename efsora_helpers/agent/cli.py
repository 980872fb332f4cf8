"""``efsora agent``, ``efsora voice ask`` and ``efsora mcp serve``: chapter 3 from the command line.

* ``efsora agent "task" [--image PATH] [--approve auto|ask|deny] [--thread ID]`` runs the LangGraph
  agent (:func:`efsora_helpers.agent.graph.run_agent`); with ``--approve ask`` each critical action
  is shown and waits for y/n on standard input (no standard input: rejected).
* ``efsora voice ask FILE.wav [--out answer.wav]``: speech in, agent, speech out
  (:mod:`efsora_helpers.agent.voice.roundtrip`).
* ``efsora mcp serve [--http]``: the warehouse tools as an MCP server over stdio or streamable HTTP
  on loopback (:mod:`efsora_helpers.agent.mcp_server`).

Errors a user can fix end with one line and exit code 2 (``efsora_helpers.cli.main``). Taught in
``notebooks/agent/01_graph.ipynb`` (agent), ``07_mcp.ipynb`` (mcp) and ``09_voice.ipynb`` (voice).
"""

from __future__ import annotations

from pathlib import Path

APPROVE_MODES = ("auto", "ask", "deny")


def add_commands(sub) -> None:
    p = sub.add_parser("agent", help="run the chapter 3 warehouse agent on a task")
    p.add_argument("task", help="what to do, in words")
    p.add_argument("--image", type=Path, help="an image the task is about")
    p.add_argument("--approve", choices=APPROVE_MODES, default="ask",
                   help="critical actions: ask on the terminal (default), approve all, or deny all")
    p.add_argument("--thread", help="conversation id; the same id resumes a checkpointed session")
    p.add_argument("--provider", help="local (default), openai, anthropic, deepseek, gemini")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print the result and trace as JSON")
    p.set_defaults(func=_agent)

    v = sub.add_parser("voice", help="speech in, agent, speech out")
    vs = v.add_subparsers(dest="action", required=True)
    ask = vs.add_parser("ask", help="answer a spoken question from a WAV file")
    ask.add_argument("file", type=Path)
    ask.add_argument("--out", type=Path, help="where to write the spoken answer (default: <file>.answer.wav)")
    ask.add_argument("--provider", help="LLM provider for the agent (default: local)")
    ask.add_argument("--approve", choices=APPROVE_MODES, default="deny")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=_voice_ask)

    m = sub.add_parser("mcp", help="the warehouse tools over the Model Context Protocol")
    ms = m.add_subparsers(dest="action", required=True)
    serve = ms.add_parser("serve", help="serve the tools over stdio (default) or streamable HTTP")
    serve.add_argument("--http", action="store_true", help="streamable HTTP on loopback instead of stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--workspace", type=Path, help="the folder file tools may use (default: a per-user one)")
    serve.add_argument("--actions", choices=("ask", "allow", "deny"), default="ask",
                       help="side-effect tools: ask the client's user per call (MCP elicitation; default), "
                            "run without asking, or refuse")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (the HTTP transport has no authentication here)")
    serve.set_defaults(func=_mcp_serve)


def _agent(args) -> int:
    from .graph import cli_run

    return cli_run(args)


def _voice_ask(args) -> int:
    from .voice.roundtrip import cli_ask

    return cli_ask(args)


def _mcp_serve(args) -> int:
    from .mcp_server import cli_serve

    return cli_serve(args)
