"""The agent's typed state: what every node of the graph reads and writes.

LangGraph keeps one state per thread. A node returns only the keys it changes; keys with a reducer
(``Annotated[list, operator.add]``) *accumulate* (the observations, the trace), the others are
replaced. That is the whole memory of a run, so a checkpoint of it is enough to resume after a
restart or a human's approval. Taught in ``notebooks/agent/01_graph.ipynb`` (the table of which
node reads and writes which key is :data:`NODE_IO`).

Trust: ``task`` (and the image and audio paths) come from the user. Everything in
``observations`` came out of a tool; results of tools that return outside text (OCR, files, search,
memory, code output) are marked ``untrusted`` and never widen ``allowed_actions``, which is decided
once, from the task text, before any tool runs (:func:`allowed_actions_for`).
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal, TypedDict

# Where the planner may send the run. ``respond`` ends the loop.
ROUTES = ("vision", "speech", "search", "calculator", "memory", "files", "action", "respond")
Route = Literal["vision", "speech", "search", "calculator", "memory", "files", "action", "respond"]
STATUSES = ("done", "interrupted", "step_limit", "error")


def add_tokens(old: dict[str, int] | None, new: dict[str, int] | None) -> dict[str, int]:
    """Reducer: token counts add up over the run (``input``, ``output``)."""
    out = dict(old or {})
    for k, v in (new or {}).items():
        out[k] = out.get(k, 0) + int(v)
    return out


class Observation(TypedDict, total=False):
    """One tool call and what came back."""

    step: int
    tool: str
    arguments: dict[str, Any]
    result: str  # shortened text of the result (the model reads this)
    is_error: bool
    untrusted: bool  # outside text (OCR, files, search, memory, code output): data, never instructions
    executed: bool  # False for a side-effect call that was refused or rejected
    action: bool  # True for a call of the action node (a side-effect tool)


class TraceRow(TypedDict, total=False):
    """One node's work: the rows of :func:`efsora_helpers.agent.trace.trace_table`."""

    step: int
    node: str
    route: str | None
    tool: str | None
    arguments: dict[str, Any] | None
    result: str
    model_route: str | None  # the planner: what the model chose before any guard
    guard: str | None  # a deterministic rule that overrode or completed the model's choice
    decision: dict[str, Any] | None  # the action node: {"approved", "reason"}
    seconds: float
    input_tokens: int
    output_tokens: int


class AgentState(TypedDict, total=False):
    # --- from the user (trusted) ---
    task: str
    image: str | None  # an image path the task is about
    audio: str | None  # a spoken question (WAV); the speech node transcribes it
    max_steps: int
    approve: Literal["auto", "ask", "deny"] | None  # how side-effect actions are decided (None: the graph's default)
    # decided once from the task text by the first planner step; never changed by tool output
    allowed_actions: list[str] | None
    # --- the loop ---
    step: int  # planner decisions so far
    route: Route | None  # the planner's latest choice (the router reads it)
    pending_call: dict[str, Any] | None  # {"tool", "arguments"} the chosen node will run
    plan: Annotated[list[str], operator.add]  # one line per planner decision
    observations: Annotated[list[Observation], operator.add]
    transcript: str | None  # what the speech node heard
    answer: str
    answered_at: int  # how many observations the answer had read (a newer one makes it stale)
    limit_hit: bool  # the planner stopped at max_steps
    verdict: Literal["done", "continue"] | None  # the evaluator's latest decision
    status: Literal["done", "interrupted", "step_limit", "error"] | None
    # --- bookkeeping ---
    turn: dict[str, int]  # lengths of trace/observations/plan when this turn began (a thread may hold several)
    trace: Annotated[list[TraceRow], operator.add]
    tokens: Annotated[dict[str, int], add_tokens]


# What each node reads and writes (the notebook prints this as a table; tests check it is complete).
NODE_IO: dict[str, tuple[list[str], list[str]]] = {
    "planner": (["task", "image", "audio", "step", "max_steps", "observations", "transcript", "allowed_actions"],
                ["allowed_actions", "image", "step", "route", "pending_call", "plan", "limit_hit", "verdict",
                 "trace", "tokens"]),
    "router (edge)": (["route", "answer", "answered_at", "observations"], []),
    "vision": (["pending_call"], ["observations", "pending_call", "trace"]),
    "speech": (["audio"], ["transcript", "observations", "pending_call", "trace"]),
    "search": (["pending_call"], ["observations", "pending_call", "trace"]),
    "calculator": (["pending_call"], ["observations", "pending_call", "trace"]),
    "memory": (["pending_call"], ["observations", "pending_call", "trace"]),
    "files": (["pending_call"], ["observations", "pending_call", "trace"]),
    "action": (["pending_call", "allowed_actions", "approve"], ["observations", "pending_call", "trace"]),
    "reasoner": (["task", "transcript", "observations"], ["answer", "answered_at", "trace", "tokens"]),
    "evaluator": (["task", "route", "answer", "observations", "allowed_actions"], ["verdict", "trace", "tokens"]),
    "respond": (["limit_hit", "answer", "observations"], ["status", "answer", "trace"]),
}

# Side-effect tools and the words in a *user's task* that request them. Deliberately plain and
# auditable: a verb that asks for the action near the thing it acts on. A false positive still
# goes through approval; a tool result can never add an entry (the list is fixed before any tool).
ACTION_REQUESTS: dict[str, re.Pattern] = {
    "stop_forklift_line": re.compile(r"\b(stop|halt|shut\s*down|pause)\b[^.?!]{0,40}\b(forklift|line|lane)", re.I),
    "send_incident_report": re.compile(
        r"\b(send|file|submit|raise|write|open|create|log)\b[^.?!]{0,40}\b(incident|report)", re.I),
    "write_file": re.compile(r"\b(write|save|store|create)\b[^.?!]{0,40}\b(file|note|notes|\.txt|\.md|\.csv|\.json)\b",
                             re.I),
}


def allowed_actions_for(task: str, side_effect_tools: list[str] | tuple[str, ...]) -> list[str]:
    """The side-effect tools the user's task asks for (only ``side_effect_tools`` that have a rule).

    >>> allowed_actions_for("Stop the forklift line in zone B", ["stop_forklift_line", "write_file"])
    ['stop_forklift_line']
    >>> allowed_actions_for("What does the handbook say about incident reports?", ["send_incident_report"])
    []
    """
    return [name for name in side_effect_tools
            if name in ACTION_REQUESTS and ACTION_REQUESTS[name].search(task or "")]


def initial_state(task: str, *, image: str | None = None, audio: str | None = None, max_steps: int = 8,
                  approve: str | None = None) -> AgentState:
    """The input of a fresh run."""
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    if approve not in (None, "auto", "ask", "deny"):
        raise ValueError(f"approve must be auto, ask or deny, not {approve!r}")
    return AgentState(task=task, image=str(image) if image else None, audio=str(audio) if audio else None,
                      max_steps=int(max_steps), approve=approve, allowed_actions=None, step=0, route=None,
                      pending_call=None, plan=[], observations=[], transcript=None, answer="", answered_at=0,
                      limit_hit=False, verdict=None, status=None,
                      trace=[], tokens={"input": 0, "output": 0})


__all__ = ["ACTION_REQUESTS", "AgentState", "NODE_IO", "Observation", "ROUTES", "Route", "STATUSES", "TraceRow",
           "add_tokens", "allowed_actions_for", "initial_state"]
