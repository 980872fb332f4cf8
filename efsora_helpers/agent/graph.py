"""The warehouse agent as a LangGraph graph, and its small stable entry point.

::

    START -> planner --(router: the planner's route)--> vision | search | calculator | memory | files | action
                                                          -> reasoner -> evaluator --done--> respond -> END
                    \\--> speech -> planner                              \\--continue--> planner
                    \\--> respond (route "respond" with a fresh answer) or reasoner (a stale one)

* :func:`build_agent` compiles the graph (a checkpointer is required for interrupts: in-memory by
  default).
* :func:`run_agent` runs one task and returns an :class:`AgentResult` (answer, status, trace, tool
  calls, tokens, seconds, the pending approval when interrupted). Two limits stop a run, and both
  end in ``status="step_limit"``, never in an exception: the planner's ``max_steps`` (tool steps,
  in the state) and LangGraph's ``recursion_limit`` (super-steps, in the run's config; by default
  :func:`recursion_limit_for` ``max_steps``, enough for every step plus the final answer).
* :func:`resume_agent` answers a pending approval (``Command(resume={"approved", "reason"})``).
* :func:`cli_run` is ``efsora agent``.

Other chapters call :func:`run_agent`. Taught in ``notebooks/agent/01_graph.ipynb``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .nodes import make_nodes, normalise_decision, route_tools
from .state import ROUTES, AgentState, initial_state

TOOL_NODES = ("vision", "search", "calculator", "memory", "files", "action")
NODES_PER_STEP = 4  # planner, tool, reasoner, evaluator: the super-steps of one loop
_SESSIONS: OrderedDict[str, Any] = OrderedDict()  # thread id -> graph, so resume_agent finds in-memory runs
_MAX_SESSIONS = 64


def recursion_limit_for(max_steps: int) -> int:
    """LangGraph super-steps a run of ``max_steps`` tool steps needs: each step is at most
    planner, tool, reasoner, evaluator; the last planner, reasoner, evaluator and respond add 4,
    and a transcription 2 more."""
    return NODES_PER_STEP * int(max_steps) + 6


@dataclass
class AgentResult:
    answer: str
    status: str  # done | interrupted | step_limit | error
    trace: list[dict] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)  # this turn's observations
    tokens: dict[str, int] = field(default_factory=dict)  # input, output, total (this turn)
    seconds: float = 0.0
    pending: dict | None = None  # {"tool", "arguments"} waiting for approval when interrupted
    thread_id: str = ""
    steps: int = 0
    max_steps: int = 0
    recursion_limit: int = 0
    allowed_actions: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def actions_taken(self) -> list[dict]:
        """Side-effect calls that really ran."""
        return [c for c in self.tool_calls if c.get("action") and c.get("executed")]

    @property
    def rejected(self) -> list[dict]:
        return [c for c in self.tool_calls if c.get("executed") is False]

    def to_dict(self) -> dict:
        return asdict(self)


def default_tools(image: str | Path | None = None):
    """The warehouse tools (:func:`.tools.warehouse_tools` on the per-user workspace). With an
    ``image`` outside the repository's ``data/``, ``perceive_image`` may read the image's folder."""
    from ..paths import repo_root
    from .tools import warehouse_tools

    images = None
    if image is not None:
        folder = Path(image).resolve().parent
        data = (repo_root() / "data").resolve()
        images = None if folder.is_relative_to(data) else folder
    return warehouse_tools(images=images)


def build_agent(*, llm=None, tools=None, checkpointer=None, approve: str = "auto", max_steps: int = 8,
                provider: str | None = None, transcribe=None, recursion_limit: int | None = None,
                hints: bool = True, routes: dict[str, list[str]] | None = None):
    """Compile the agent graph.

    ``llm``: a LangChain chat model (default ``chat_model(provider)``); ``tools``: a ToolRegistry
    (default :func:`default_tools`); ``checkpointer``: any LangGraph saver (default in-memory; the
    approval node's interrupt needs one); ``approve``: ``auto`` | ``ask`` | ``deny`` for the
    side-effect tools; ``max_steps``: the default step limit of runs without one in their input;
    ``transcribe``: the speech node's ASR (default ``agent.voice.asr.transcribe``, loaded lazily).
    ``hints``: let the planner's rule layer (:func:`.nodes.route_hint`) override the model's route
    where the task's words name the fact to fetch (off: the model alone routes). ``routes``: route ->
    tool names, for registries whose tools :data:`.nodes.ROUTE_OF` does not know (tools from an MCP
    server, say); default :func:`.nodes.route_tools` (unknown read-only tools go to ``files``).
    The graph carries ``recursion_limit`` in its config (default :func:`recursion_limit_for`).
    """
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    if llm is None:
        from ..llm.langchain import chat_model

        llm = chat_model(provider)
    registry = tools if tools is not None else default_tools()
    by_route = {r: list(v) for r, v in (routes or route_tools(registry)).items()}
    for r in ROUTES:
        by_route.setdefault(r, [])
    unknown = {t for v in by_route.values() for t in v} - set(registry.tools)
    if unknown:
        raise ValueError(f"routes name tools the registry lacks: {', '.join(sorted(unknown))}")
    nodes = make_nodes(llm, registry, approve=approve, routes=by_route, transcribe=transcribe,
                       max_steps=max_steps, hints=hints)

    g = StateGraph(AgentState)
    for name, fn in nodes.items():
        g.add_node(name, fn)
    g.add_edge(START, "planner")

    def router(state: AgentState) -> str:
        route = state.get("route") or "respond"
        if route == "respond":
            fresh = (state.get("answer") or "").strip() and \
                int(state.get("answered_at") or 0) >= len(state.get("observations") or [])
            return "respond" if fresh else "reasoner"
        return route

    g.add_conditional_edges("planner", router, {**{r: r for r in TOOL_NODES}, "speech": "speech",
                                                "reasoner": "reasoner", "respond": "respond"})
    for r in TOOL_NODES:
        g.add_edge(r, "reasoner")
    g.add_edge("speech", "planner")  # a transcript is the question, not an answer: plan with it
    g.add_edge("reasoner", "evaluator")
    g.add_conditional_edges("evaluator", lambda s: "respond" if s.get("verdict") == "done" else "planner",
                            {"respond": "respond", "planner": "planner"})
    g.add_edge("respond", END)
    graph = g.compile(checkpointer=checkpointer if checkpointer is not None else InMemorySaver())
    limit = recursion_limit or recursion_limit_for(max_steps)
    graph = graph.with_config(recursion_limit=limit)
    graph.name = "warehouse_agent"
    return graph


def _remember(thread_id: str, graph) -> None:
    _SESSIONS[thread_id] = graph
    _SESSIONS.move_to_end(thread_id)
    while len(_SESSIONS) > _MAX_SESSIONS:
        _SESSIONS.popitem(last=False)


def _config(graph, thread_id: str, recursion_limit: int | None) -> dict:
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
    if recursion_limit:
        config["recursion_limit"] = int(recursion_limit)
    return config


def _limit_of(graph, config: dict) -> int:
    return int(config.get("recursion_limit") or (getattr(graph, "config", None) or {}).get("recursion_limit") or 25)


def _result(graph, config: dict, t0: float, *, status: str | None = None, error: str | None = None,
            extra_rows: list[dict] | None = None) -> AgentResult:
    snap = graph.get_state(config)
    v = snap.values or {}
    turn = v.get("turn") or {}
    trace = list(v.get("trace") or [])[turn.get("trace", 0):] + list(extra_rows or [])
    calls = list(v.get("observations") or [])[turn.get("observations", 0):]
    plan = list(v.get("plan") or [])[turn.get("plan", 0):]
    pending = None
    if snap.interrupts:
        pending = snap.interrupts[0].value
        status = status or "interrupted"
    status = status or v.get("status") or ("error" if error else "done")
    tin = sum(int(r.get("input_tokens") or 0) for r in trace)
    tout = sum(int(r.get("output_tokens") or 0) for r in trace)
    return AgentResult(answer=v.get("answer") or "", status=status, trace=trace, tool_calls=calls,
                       tokens={"input": tin, "output": tout, "total": tin + tout},
                       seconds=round(time.perf_counter() - t0, 3), pending=pending,
                       thread_id=config["configurable"]["thread_id"], steps=int(v.get("step") or 0),
                       max_steps=int(v.get("max_steps") or 0), recursion_limit=_limit_of(graph, config),
                       allowed_actions=list(v.get("allowed_actions") or []), plan=plan, error=error)


def _invoke(graph, payload, config: dict, t0: float) -> AgentResult:
    from langgraph.errors import GraphRecursionError

    try:
        graph.invoke(payload, config)
    except GraphRecursionError:
        limit = _limit_of(graph, config)
        row = {"step": None, "node": "recursion_limit", "route": None, "tool": None, "arguments": None,
               "result": f"LangGraph stopped the run after {limit} super-steps", "guard": "recursion_limit",
               "seconds": 0.0, "input_tokens": 0, "output_tokens": 0}
        return _result(graph, config, t0, status="step_limit", extra_rows=[row])
    except Exception as exc:  # noqa: BLE001 - a run reports its failure; it does not crash the caller
        return _result(graph, config, t0, status="error", error=f"{type(exc).__name__}: {exc}")
    return _result(graph, config, t0)


def _check_image(image: str | Path | None) -> str | None:
    if image is None:
        return None
    from ..paths import repo_root

    p = Path(image).expanduser()
    for candidate in (p, repo_root() / "data" / p):
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(f"no image at {image}")


def run_agent(task: str, *, image: str | Path | None = None, approve: str | None = None, thread_id: str | None = None,
              provider: str | None = None, max_steps: int = 8, checkpointer=None, llm=None, tools=None,
              audio: str | Path | None = None, recursion_limit: int | None = None, graph=None) -> AgentResult:
    """Run the agent on one task (a new turn when ``thread_id`` already has a finished run).

    ``approve`` (``auto`` | ``ask`` | ``deny``) goes into the run's state, so one compiled graph serves
    every mode; ``None`` keeps the graph's own (``auto`` for a graph built here).
    ``approve="ask"`` pauses at the first side-effect action: the result has ``status="interrupted"``
    and ``pending={"tool", "arguments"}``; answer with :func:`resume_agent`. ``graph``: a compiled
    :func:`build_agent` graph to reuse (then ``llm``, ``tools``, ``checkpointer`` are ignored).
    """
    if not (task or "").strip():
        raise ValueError("the task is empty")
    image = _check_image(image)
    if audio is not None and not Path(audio).is_file():
        raise FileNotFoundError(f"no audio file at {audio}")
    t0 = time.perf_counter()
    if graph is None:
        graph = build_agent(llm=llm, tools=tools if tools is not None else default_tools(image),
                            checkpointer=checkpointer, approve=approve or "auto", max_steps=max_steps,
                            provider=provider,
                            recursion_limit=recursion_limit)
    thread_id = thread_id or uuid.uuid4().hex[:12]
    _remember(thread_id, graph)
    config = _config(graph, thread_id, recursion_limit)
    snapshot = graph.get_state(config)
    if snapshot.interrupts:
        raise ValueError(f"thread {thread_id!r} waits for an approval: answer it with resume_agent first")
    before = snapshot.values or {}
    payload = dict(initial_state(task, image=image, audio=audio, max_steps=max_steps, approve=approve))
    # A new turn on an old thread: accumulating keys keep their history (the reducers add []), the rest
    # is reset; ``turn`` marks where this turn's rows begin.
    for key in ("plan", "observations", "trace"):
        payload.pop(key)
    payload["tokens"] = {}
    payload["answered_at"] = len(before.get("observations") or [])
    payload["turn"] = {k: len(before.get(k) or []) for k in ("trace", "observations", "plan")}
    return _invoke(graph, payload, config, t0)


def resume_agent(thread_id: str, decision: Any, *, graph=None, checkpointer=None, provider: str | None = None,
                 llm=None, tools=None, approve: str = "ask", max_steps: int = 8,
                 recursion_limit: int | None = None) -> AgentResult:
    """Answer the pending approval of ``thread_id`` and run on.

    ``decision``: ``{"approved": bool, "reason": str}``, a bool, or ``"y"``/``"n"``. The graph is
    ``graph``, else the one :func:`run_agent` used for this thread in this process, else a new one
    on ``checkpointer`` (for a session saved to SQLite by another process).
    """
    from langgraph.types import Command

    t0 = time.perf_counter()
    if graph is None:
        graph = _SESSIONS.get(thread_id)
    if graph is None:
        if checkpointer is None:
            raise ValueError(f"no agent session {thread_id!r} in this process; pass its checkpointer")
        graph = build_agent(llm=llm, tools=tools, checkpointer=checkpointer, approve=approve, max_steps=max_steps,
                            provider=provider, recursion_limit=recursion_limit)
        _remember(thread_id, graph)
    config = _config(graph, thread_id, recursion_limit)
    if not graph.get_state(config).interrupts:
        raise ValueError(f"thread {thread_id!r} has no pending approval")
    return _invoke(graph, Command(resume=normalise_decision(decision)), config, t0)


# ---------------------------------------------------------------- efsora agent


def thread_db() -> Path:
    """The SQLite file ``efsora agent --thread`` keeps its checkpoints in."""
    from ..paths import efsora_home

    path = efsora_home() / "agent" / "threads.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def ask_on_terminal(pending: dict, stdin=None, stdout=None) -> dict:
    """Show one pending action and read y/n; no input (EOF) rejects."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stderr
    print(f"approve {pending.get('tool')}({json.dumps(pending.get('arguments', {}))})? [y/N] ", end="",
          file=stdout, flush=True)
    try:
        line = stdin.readline() if stdin is not None and not stdin.closed else ""
    except (OSError, ValueError):
        line = ""
    if not line:
        print("(no answer: rejected)", file=stdout)
        return {"approved": False, "reason": "no answer on standard input"}
    approved = line.strip().lower() in {"y", "yes"}
    return {"approved": approved, "reason": "approved on the terminal" if approved else "rejected on the terminal"}


def cli_run(args) -> int:
    """``efsora agent "task" [--image] [--approve auto|ask|deny] [--thread ID] [--json]``."""
    from ..llm.errors import MissingKeyError

    image = _check_image(getattr(args, "image", None))
    approve = getattr(args, "approve", "ask") or "ask"
    max_steps = int(getattr(args, "max_steps", 8) or 8)
    if max_steps < 1:
        raise ValueError("--max-steps must be at least 1")
    thread = getattr(args, "thread", None)

    def go(checkpointer) -> AgentResult:
        try:
            graph = build_agent(tools=default_tools(image), checkpointer=checkpointer, approve=approve,
                                max_steps=max_steps, provider=getattr(args, "provider", None))
        except MissingKeyError as exc:
            raise ValueError(str(exc)) from None
        thread_id = thread or uuid.uuid4().hex[:12]
        config = _config(graph, thread_id, None)
        if thread and graph.get_state(config).interrupts:
            print(f"thread {thread}: resuming the pending approval", file=sys.stderr)
            result = _result(graph, config, time.perf_counter())
        else:
            result = run_agent(args.task, image=image, approve=approve, thread_id=thread_id, max_steps=max_steps,
                               graph=graph)
        while result.status == "interrupted" and result.pending:
            result = resume_agent(thread_id, ask_on_terminal(result.pending), graph=graph)
        return result

    if thread:
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(str(thread_db())) as saver:
            result = go(saver)
    else:
        result = go(None)
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        from .trace import format_trace

        print(format_trace(result.trace))
        print()
        print(f"status: {result.status}  steps: {result.steps}/{result.max_steps}  "
              f"tokens: {result.tokens.get('total', 0)}  seconds: {result.seconds:.1f}  thread: {result.thread_id}")
        if result.error:
            print(f"error: {result.error}")
        print(f"answer: {result.answer}")
    return 0 if result.status in {"done", "step_limit"} else 1


__all__ = ["AgentResult", "ROUTES", "build_agent", "cli_run", "recursion_limit_for", "resume_agent", "run_agent",
           "thread_db"]
