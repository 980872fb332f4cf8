"""Human approval, SQLite checkpoints and time travel for LangGraph agents.

Taught in ``notebooks/agent/06_approval.ipynb``.

* :func:`sqlite_checkpointer` opens a ``SqliteSaver`` on a file: every super-step of a graph writes
  a checkpoint there, so a session paused for approval survives the process that started it.
* Approval: a critical action pauses with LangGraph's ``interrupt({"tool": ..., "arguments": ...})``
  and resumes with ``Command(resume={"approved": bool, "reason": str})`` (the contract of
  :mod:`.graph`). :func:`pending` reads the paused requests from a graph's state, :func:`show`
  prints one for a person, and a *policy* (``"auto"``, ``"deny"``, ``"ask"`` or any callable, see
  :func:`as_policy` and :func:`tool_policy`) decides, or says that a person must. :func:`drive`
  runs a graph and answers its interrupts with a policy until it finishes or a person is needed.
* Time travel: :func:`history` is a table of a thread's checkpoints (all branches), :func:`fork`
  writes an edited copy of a past checkpoint (``update_state``) and returns its config,
  :func:`replay` runs again from a past checkpoint, :func:`plot_checkpoint_tree` draws the tree.
* :func:`resume_in_new_process` resumes a thread in a fresh Python process, which proves the state
  lives in the file and not in memory (``python -m efsora_helpers.agent.approval`` is its worker).
* :func:`approval_graph` is the smallest graph with the same interrupt contract (plan -> approve ->
  act -> respond, no model): the notebook uses it to show the machinery before the full agent.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import operator
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal, TypedDict

#: What a resume carries (the contract of :mod:`.graph`).
Decision = dict  # {"approved": bool, "reason": str}
#: A policy looks at a request and returns a decision, or ``None`` when a person must decide.
Policy = Callable[["ApprovalRequest"], "Decision | None"]

APPROVE_MODES = ("auto", "ask", "deny")


# --------------------------------------------------------------------------- checkpoints on disk


@contextlib.contextmanager
def sqlite_checkpointer(path: str | Path) -> Iterator[Any]:
    """A LangGraph ``SqliteSaver`` on ``path`` (created with its folder), closed on exit.

    The file outlives the process: open it again (here or in another process) and the same
    ``thread_id`` finds the same checkpoints. ``check_same_thread=False`` because LangGraph may call
    the saver from its worker threads; the saver serialises access with its own lock.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()  # creates the tables now, so a reader in another process finds them
        yield saver
    finally:
        conn.close()


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> dict:
    """The ``config`` LangGraph wants: a thread, optionally pinned to one checkpoint."""
    configurable = {"thread_id": str(thread_id)}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _config(thread_or_config: str | dict) -> dict:
    return thread_config(thread_or_config) if isinstance(thread_or_config, str) else thread_or_config


def checkpoint_id(config_or_snapshot: Any) -> str | None:
    """The checkpoint id in a config dict or a ``StateSnapshot``."""
    config = getattr(config_or_snapshot, "config", config_or_snapshot) or {}
    return config.get("configurable", {}).get("checkpoint_id")


# --------------------------------------------------------------------------- approval requests


@dataclass
class ApprovalRequest:
    """One paused critical action, read from the graph's state (the ``interrupt`` payload)."""

    tool: str
    arguments: dict[str, Any]
    asked_by: str  # the payload's own ``asked_by``, else the node that paused (and the agent's step)
    why: str  # the payload's reason, else the action's ``reason`` argument, else the task
    interrupt_id: str
    task: str = ""  # the user's task on the thread: the only text allowed to ask for an action
    thread_id: str | None = None
    checkpoint_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def show(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return (f"APPROVAL NEEDED  {self.tool}({args})\n"
                f"  asked by: {self.asked_by}\n"
                f"  why:      {self.why}\n"
                + (f"  task:     {self.task}\n" if self.task and self.task != self.why else "") +
                f"  thread:   {self.thread_id}  checkpoint: {(self.checkpoint_id or '')[-12:]}")

    __str__ = show


def _asker(node: str, values: dict) -> str:
    step = values.get("step")
    return f"the {node} node" + (f" at step {step}" if isinstance(step, int) and step else "")


def pending(graph, thread_or_config: str | dict) -> list[ApprovalRequest]:
    """The approval requests a paused thread is waiting on (empty when it is not paused)."""
    state = graph.get_state(_config(thread_or_config))
    requests = []
    for task in state.tasks:
        for intr in task.interrupts:
            value = intr.value if isinstance(intr.value, dict) else {"tool": "?", "arguments": {"value": intr.value}}
            arguments = dict(value.get("arguments") or {})
            why = (value.get("why") or value.get("reason") or arguments.get("reason")
                   or state.values.get("task") or "")
            requests.append(ApprovalRequest(
                tool=str(value.get("tool", "?")), arguments=arguments,
                asked_by=str(value.get("asked_by") or _asker(task.name, state.values)), why=str(why),
                interrupt_id=intr.id, task=str(state.values.get("task") or ""),
                thread_id=state.config["configurable"].get("thread_id"),
                checkpoint_id=checkpoint_id(state), payload=dict(value)))
    return requests


def show(requests: ApprovalRequest | list[ApprovalRequest]) -> str:
    """Text a person reads before deciding (one block per request)."""
    if isinstance(requests, ApprovalRequest):
        requests = [requests]
    return "\n".join(r.show() for r in requests) if requests else "(nothing waiting for approval)"


def decision(approved: bool, reason: str = "") -> Decision:
    """The resume value of the contract: ``{"approved": bool, "reason": str}``."""
    return {"approved": bool(approved), "reason": reason or ("approved" if approved else "rejected")}


# --------------------------------------------------------------------------- policies


def approve_all(request: ApprovalRequest) -> Decision:
    return decision(True, "approved by policy: auto")


def deny_all(request: ApprovalRequest) -> Decision:
    return decision(False, "rejected by policy: deny")


def ask_person(request: ApprovalRequest) -> None:
    """The ``ask`` policy: never decides, a person must (see :func:`terminal_person`)."""
    return None


def terminal_person(input_fn: Callable[[str], str] = input, out: Callable[[str], Any] = print) -> Policy:
    """A person at a terminal: prints the request, reads y/n. No standard input means rejected."""

    def person(request: ApprovalRequest) -> Decision:
        out(request.show())
        try:
            answer = input_fn("approve? [y/N] ").strip().lower()
        except EOFError:
            return decision(False, "rejected: nobody at the terminal")
        return decision(answer in {"y", "yes"}, f"person answered {answer or 'nothing'!r}")

    return person


def scripted_person(answers: dict[str, bool], reason: str = "scripted reviewer") -> Policy:
    """A stand-in for a person with fixed answers per tool (notebooks and tests; unknown: rejected)."""

    def person(request: ApprovalRequest) -> Decision:
        ok = answers.get(request.tool, False)
        return decision(ok, f"{reason}: {'yes' if ok else 'no'} to {request.tool}")

    return person


def as_policy(spec: str | Policy) -> Policy:
    """``"auto"`` approves, ``"deny"`` rejects, ``"ask"`` leaves it to a person; a callable is used as is."""
    if callable(spec):
        return spec
    table = {"auto": approve_all, "deny": deny_all, "ask": ask_person}
    if spec not in table:
        raise ValueError(f"unknown approval policy {spec!r}; use one of {', '.join(APPROVE_MODES)} or a callable")
    return table[spec]


def tool_policy(rules: dict[str, Literal["auto", "ask", "deny"]], default: Literal["auto", "ask", "deny"] = "ask",
                check: Callable[[ApprovalRequest], str | None] | None = None) -> Policy:
    """Per-tool rules, e.g. ``{"send_incident_report": "auto", "stop_forklift_line": "ask"}``.

    ``check`` may veto any request first: it returns a reason to reject, or ``None``. A tool not in
    ``rules`` gets ``default``; ``ask`` means a person decides (the policy returns ``None``).
    """
    for mode in [*rules.values(), default]:
        as_policy(mode)

    def policy(request: ApprovalRequest) -> Decision | None:
        if check is not None and (problem := check(request)):
            return decision(False, f"rejected by policy: {problem}")
        mode = rules.get(request.tool, default)
        result = as_policy(mode)(request)
        if result is not None:
            result = decision(result["approved"], f"{result['reason']} ({request.tool} -> {mode})")
        return result

    return policy


@dataclass
class DriveResult:
    """What :func:`drive` ended with."""

    values: dict[str, Any]
    status: Literal["done", "interrupted"]
    decisions: list[tuple[ApprovalRequest, Decision]]
    waiting: list[ApprovalRequest]
    config: dict


def resume_command(requests: list[ApprovalRequest], decisions: list[Decision]):
    """``Command(resume=...)``: the bare decision for one interrupt, a map by interrupt id for several."""
    from langgraph.types import Command

    if len(requests) == 1:
        return Command(resume=decisions[0])
    return Command(resume={r.interrupt_id: d for r, d in zip(requests, decisions)})


def drive(graph, inputs: Any, thread_or_config: str | dict, policy: str | Policy = "ask",
          person: Policy | None = None, *, max_rounds: int = 10, **invoke_kwargs: Any) -> DriveResult:
    """Run ``graph`` and answer its approval interrupts until it finishes or a person is needed.

    ``inputs`` is the first input (``None`` continues a thread from its checkpoint). At each pause the
    policy decides each request; where it returns ``None`` the ``person`` decides, and without a
    person the run stops with ``status="interrupted"`` and the requests in ``waiting``: resume
    later, from this process or another, with :func:`resume`.
    """
    policy = as_policy(policy)
    config = _config(thread_or_config)
    thread = {"configurable": {"thread_id": config["configurable"]["thread_id"]}}
    made: list[tuple[ApprovalRequest, Decision]] = []
    if inputs is None and not checkpoint_id(config) and pending(graph, thread):
        pass  # the thread is already paused: answer what it waits on (invoking would re-run the node)
    else:
        graph.invoke(inputs, config, **invoke_kwargs)
    for _ in range(max_rounds):
        # After a replay or a fork the thread's newest checkpoint is the branch just run.
        requests = pending(graph, thread)
        if not requests:
            break
        decisions = []
        for request in requests:
            d = policy(request)
            if d is None and person is not None:
                d = person(request)
            if d is None:
                state = graph.get_state(thread)
                return DriveResult(dict(state.values), "interrupted", made, requests, state.config)
            decisions.append(d)
            made.append((request, d))
        graph.invoke(resume_command(requests, decisions), thread, **invoke_kwargs)
    state = graph.get_state(thread)
    waiting = pending(graph, thread)
    return DriveResult(dict(state.values), "interrupted" if waiting else "done", made, waiting, state.config)


def resume(graph, thread_or_config: str | dict, approved: bool, reason: str = "", **invoke_kwargs: Any) -> dict:
    """Answer every request a paused thread waits on with the same decision; returns the new values."""
    config = _config(thread_or_config)
    requests = pending(graph, config)
    if not requests:
        raise ValueError(f"thread {config['configurable'].get('thread_id')!r} is not waiting for approval")
    d = decision(approved, reason)
    return graph.invoke(resume_command(requests, [d] * len(requests)), config, **invoke_kwargs)


# --------------------------------------------------------------------------- time travel


def _short(value: Any, width: int = 48) -> str:
    if hasattr(value, "content") and hasattr(value, "type"):  # a LangChain message
        text = f"{value.type}: {value.content or getattr(value, 'tool_calls', '')}"
    else:
        text = repr(value)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays, whose == is elementwise
        return a is b


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict, tuple, int, float)) and not value)


#: State keys :func:`history` leaves out of ``changed`` by default (bookkeeping that changes every step).
NOISY_KEYS = ("trace", "tokens", "turn", "answered_at")


def changes(before: dict[str, Any], after: dict[str, Any], ignore: tuple[str, ...] = (), width: int = 110) -> str:
    """What a checkpoint changed against its parent, in one line (``key=value``, ``key +n``).

    Keys in ``ignore`` are skipped, and so are new keys set to an empty value (the defaults of an input).
    """
    parts = []
    for key in after:
        old, new = before.get(key), after[key]
        if key in ignore or (key in before and _same(old, new)) or (key not in before and _is_empty(new)):
            continue
        if isinstance(old, list) and isinstance(new, list) and _same(new[: len(old)], old):
            added = new[len(old):]
            parts.append(f"{key} +{len(added)}" + (f" [{_short(added[-1], 40)}]" if added else ""))
        else:
            parts.append(f"{key}={_short(new, 40)}")
    parts += [f"-{k}" for k in before if k not in after and k not in ignore]
    text = "; ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def snapshots(graph, thread_id: str) -> list[Any]:
    """Every checkpoint of a thread, every branch, oldest first (``StateSnapshot`` objects)."""
    # Checkpoint ids are time-ordered (UUIDv6), so sorting by id is creation order.
    return sorted(graph.get_state_history(thread_config(thread_id)), key=checkpoint_id)


def _tool_of(intr: Any) -> str:
    value = getattr(intr, "value", None)
    return str(value.get("tool", "?")) if isinstance(value, dict) else "?"


def history(graph, thread_id: str, ignore: tuple[str, ...] = NOISY_KEYS):
    """A table (pandas) of a thread's checkpoints, oldest first, with their tree structure.

    Columns: ``step`` (LangGraph's super-step), ``source`` (input, loop, update = written by
    ``update_state``, fork = copied to replay), ``checkpoint`` / ``parent`` (last 8 characters of
    the ids), ``branch`` (0 = the first run; a new number where a checkpoint is not its parent's
    first child), ``next`` (the node(s) that run from here), ``waiting`` (tools paused for
    approval), ``changed`` (the state keys that differ from the parent), ``head`` (on the path of
    the thread's newest checkpoint), and ``checkpoint_id`` (the full id, for :func:`thread_config`).
    """
    import pandas as pd

    columns = ["step", "source", "checkpoint", "parent", "branch", "next", "waiting", "changed", "head",
               "checkpoint_id"]
    snaps = snapshots(graph, thread_id)
    if not snaps:
        return pd.DataFrame(columns=columns)
    by_id = {checkpoint_id(s): s for s in snaps}
    head = checkpoint_id(graph.get_state(thread_config(thread_id)))
    on_head, cur = set(), head
    while cur in by_id:
        on_head.add(cur)
        cur = checkpoint_id(by_id[cur].parent_config)
    branch_of: dict[str, int] = {}
    first_child: set[str] = set()
    next_branch = 0
    rows = []
    for snap in snaps:
        cid, parent = checkpoint_id(snap), checkpoint_id(snap.parent_config)
        # A checkpoint continues its parent's branch if it is the parent's first child.
        if parent in branch_of and parent not in first_child:
            branch_of[cid] = branch_of[parent]
        else:
            branch_of[cid] = next_branch
            next_branch += 1
        if parent:
            first_child.add(parent)
        before = dict(by_id[parent].values) if parent in by_id else {}
        rows.append({
            "step": snap.metadata.get("step"), "source": snap.metadata.get("source"),
            "checkpoint": cid[-8:], "parent": (parent or "")[-8:], "branch": branch_of[cid],
            "next": ",".join(snap.next) or "(end)",
            "waiting": ",".join(_tool_of(i) for t in snap.tasks for i in t.interrupts),
            "changed": changes(before, dict(snap.values), ignore),
            "head": cid in on_head, "checkpoint_id": cid})
    return pd.DataFrame(rows, columns=columns)


def find(graph, thread_id: str, *, next_node: str | None = None, branch_head: bool = True,
         where: Callable[[Any], bool] | None = None) -> Any:
    """The first checkpoint (oldest first, on the newest run's path when ``branch_head``) that
    is about to run ``next_node`` and satisfies ``where``; raises ``LookupError`` if none."""
    snaps = snapshots(graph, thread_id)
    if branch_head:
        table = history(graph, thread_id)
        keep = set(table.loc[table["head"], "checkpoint_id"])
        snaps = [s for s in snaps if checkpoint_id(s) in keep]
    for snap in snaps:
        if next_node is not None and next_node not in snap.next:
            continue
        if where is not None and not where(snap):
            continue
        return snap
    raise LookupError(f"no checkpoint of thread {thread_id!r} before {next_node!r} matches")


def fork(graph, checkpoint_config: dict, update: dict[str, Any], *, as_node: str | None = None) -> dict:
    """Write ``update`` onto a copy of a past checkpoint; returns the new checkpoint's config.

    The original checkpoint and everything after it stay in the file: the new checkpoint's parent is
    the past one, so the thread now has two branches. Values go through the state's reducers (a list
    with ``operator.add`` is appended to, not replaced). ``as_node`` makes the update look as if
    that node wrote it, which decides what runs next (default: the node that wrote last).
    Continue the branch with ``graph.invoke(None, new_config)`` or :func:`drive`.
    """
    if not checkpoint_id(checkpoint_config):
        raise ValueError("fork needs a config with a checkpoint_id (from history() or get_state_history())")
    return graph.update_state(checkpoint_config, update, as_node=as_node)


def replay(graph, checkpoint_config: dict, policy: str | Policy = "ask", person: Policy | None = None,
           **invoke_kwargs: Any) -> DriveResult:
    """Run the graph again from a past checkpoint (nodes after it re-execute, interrupts fire again).

    LangGraph copies the checkpoint (``source="fork"``) and continues from the copy, so the old
    run stays in the history as another branch. Interrupts are answered as in :func:`drive`.
    """
    if not checkpoint_id(checkpoint_config):
        raise ValueError("replay needs a config with a checkpoint_id (from history() or get_state_history())")
    return drive(graph, None, checkpoint_config, policy, person, **invoke_kwargs)


def plot_checkpoint_tree(table, ax=None, title: str | None = None):
    """Draw :func:`history`'s table as a tree: x = creation order, y = branch, edges to parents."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(table)), 1.2 + 0.9 * (table["branch"].max() + 1)))
    pos = {row.checkpoint: (i, -row.branch) for i, row in enumerate(table.itertuples())}
    for row in table.itertuples():
        if row.parent in pos:
            (x0, y0), (x1, y1) = pos[row.parent], pos[row.checkpoint]
            ax.plot([x0, x0, x1] if y0 != y1 else [x0, x1], [y0, y1, y1] if y0 != y1 else [y0, y1],
                    color="0.6", zorder=1)
    colours = {"input": "#999999", "loop": "#4c72b0", "update": "#dd8452", "fork": "#55a868"}
    for row in table.itertuples():
        x, y = pos[row.checkpoint]
        ax.scatter([x], [y], s=140, color=colours.get(row.source, "k"), zorder=2,
                   edgecolors="k" if row.head else "none", linewidths=1.5)
        label = row.next if row.next != "(end)" else "END"
        ax.annotate(label + (" (wait)" if row.waiting else ""), (x, y), textcoords="offset points",
                    xytext=(0, 9), ha="center", fontsize=7, rotation=30)
    for source, colour in colours.items():
        ax.scatter([], [], color=colour, label=source)
    ax.legend(loc="lower left", fontsize=7, ncol=4, frameon=False, bbox_to_anchor=(0, -0.35))
    ax.set_yticks(sorted({-b for b in table["branch"]}))
    ax.set_yticklabels([f"branch {-b}" for b in sorted({-b for b in table["branch"]})])
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([str(s) for s in table["step"]], fontsize=7)
    ax.set_xlabel("checkpoints in creation order (label: LangGraph step)")
    ax.set_ylim(-table["branch"].max() - 0.6, 0.9)
    ax.set_title(title or "checkpoint tree (label: next node; (wait): paused for approval; ringed: newest path)",
                 fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


# --------------------------------------------------------------------------- a restart in a new process


def fingerprint(graph, thread_or_config: str | dict) -> dict[str, Any]:
    """What must match after a restart: checkpoint id, next nodes, waiting tools and a hash of the values."""
    state = graph.get_state(_config(thread_or_config))
    blob = json.dumps(state.values, sort_keys=True, default=repr)
    return {"checkpoint_id": checkpoint_id(state), "next": list(state.next),
            "waiting": [r.tool for r in pending(graph, thread_or_config)],
            "values_sha256": hashlib.sha256(blob.encode()).hexdigest()[:16], "keys": sorted(state.values)}


def _load(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def resume_in_new_process(db: str | Path, thread_id: str, approve: bool | None, *, reason: str = "",
                          builder: str = "efsora_helpers.agent.graph:build_agent",
                          builder_kwargs: dict[str, Any] | None = None, timeout: float = 300,
                          env: dict[str, str] | None = None) -> dict[str, Any]:
    """Open ``db`` in a fresh Python process, rebuild the graph, read the thread and (when
    ``approve`` is not ``None``) resume it with that decision.

    ``builder`` is ``"module:function"``; it is called as ``function(checkpointer=saver, **builder_kwargs)``
    (JSON-able kwargs only). Returns the child's report: ``before`` (:func:`fingerprint` as found on
    disk), ``after``, ``waiting`` (requests as dicts), ``values`` (the final values, as text where not
    JSON), ``pid`` and ``seconds``.
    """
    cmd = [sys.executable, "-m", "efsora_helpers.agent.approval", "--db", str(db), "--thread", thread_id,
           "--builder", builder, "--builder-kwargs", json.dumps(builder_kwargs or {})]
    if approve is not None:
        cmd += ["--decision", json.dumps(decision(approve, reason))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the new process failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(argv: list[str] | None = None) -> int:
    import os
    import time

    p = argparse.ArgumentParser(description="resume a checkpointed LangGraph thread "
                                            "(the worker of resume_in_new_process)")
    p.add_argument("--db", required=True)
    p.add_argument("--thread", required=True)
    p.add_argument("--builder", required=True)
    p.add_argument("--builder-kwargs", default="{}")
    p.add_argument("--decision")
    args = p.parse_args(argv)
    start = time.perf_counter()
    with sqlite_checkpointer(args.db) as saver:
        graph = _load(args.builder)(checkpointer=saver, **json.loads(args.builder_kwargs))
        before = fingerprint(graph, args.thread)
        waiting = [asdict(r) for r in pending(graph, args.thread)]
        if args.decision:
            d = json.loads(args.decision)
            resume(graph, args.thread, d["approved"], d.get("reason", ""))
        after = fingerprint(graph, args.thread)
        values = graph.get_state(thread_config(args.thread)).values
    report = {"pid": os.getpid(), "before": before, "after": after, "waiting": waiting,
              "values": json.loads(json.dumps(values, default=_short)),
              "seconds": round(time.perf_counter() - start, 3)}
    print(json.dumps(report, default=str))
    return 0


def agent_builder(*, checkpointer=None, workspace: str | None = None, provider: str | None = None,
                  approve: str = "ask", max_steps: int = 8):
    """The chapter's agent (:func:`.graph.build_agent`) on the warehouse tools of ``workspace``.

    JSON-able arguments only, so :func:`resume_in_new_process` can rebuild the same agent in a new
    process (``builder="efsora_helpers.agent.approval:agent_builder"``). The model comes from
    ``provider`` (default: the local one): a checkpoint stores the state, not the model, so a
    thread paused under one model may be resumed under another.
    """
    from .graph import build_agent
    from .tools import warehouse_tools

    return build_agent(tools=warehouse_tools(workspace), checkpointer=checkpointer, approve=approve,
                       max_steps=max_steps, provider=provider)


# --------------------------------------------------------------------------- the smallest approval graph


class ApprovalState(TypedDict, total=False):
    task: str
    tool: str
    arguments: dict[str, Any]
    decision: dict[str, Any]
    result: str
    answer: str
    log: Annotated[list[str], operator.add]


def approval_graph(registry=None, *, checkpointer=None, workspace: str | Path | None = None):
    """plan -> approve -> act -> respond: the approval machinery with no model in it.

    The input names the action (``{"task": ..., "tool": ..., "arguments": {...}}``), so the route is
    forced and the run is deterministic; the lesson is the machinery, not the model. ``approve``
    calls ``interrupt`` with the same payload as the agent (:mod:`.graph`); ``act`` runs the tool
    from ``registry`` (default: :func:`.tools.warehouse_tools` on ``workspace``) only when approved.
    The side effect lives in its own node *after* the interrupt, because on resume LangGraph
    re-runs the interrupted node from its first line.
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    if registry is None:
        from .tools import warehouse_tools

        registry = warehouse_tools(workspace)

    def plan(state: ApprovalState) -> dict:
        tool = state.get("tool", "")
        if tool not in registry.tools:
            raise ValueError(f"unknown tool {tool!r}")
        return {"log": [f"plan: {tool}"]}

    def approve(state: ApprovalState) -> dict:
        needs = registry.tools[state["tool"]].side_effects
        if not needs:
            return {"decision": decision(True, "no side effects: no approval needed"), "log": ["approve: not needed"]}
        d = interrupt({"tool": state["tool"], "arguments": state.get("arguments", {}),
                       "asked_by": "planner", "why": state.get("task", "")})
        return {"decision": d, "log": [f"approve: {'yes' if d.get('approved') else 'no'}"]}

    def act(state: ApprovalState) -> dict:
        d = state.get("decision") or {}
        if not d.get("approved"):
            return {"result": f"{state['tool']} was not approved ({d.get('reason', '')}); the action was not taken",
                    "log": ["act: skipped"]}
        value, is_error = registry.call(state["tool"], arguments=state.get("arguments", {}))
        text = value if isinstance(value, str) else json.dumps(value)
        return {"result": text, "log": [f"act: {'error' if is_error else 'done'}"]}

    def respond(state: ApprovalState) -> dict:
        return {"answer": f"{state.get('task', '')} -> {state.get('result', '')}", "log": ["respond"]}

    builder = StateGraph(ApprovalState)
    for name, fn in [("plan", plan), ("approve", approve), ("act", act), ("respond", respond)]:
        builder.add_node(name, fn)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "approve")
    builder.add_edge("approve", "act")
    builder.add_edge("act", "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


__all__ = [
    "ApprovalRequest", "ApprovalState", "Decision", "DriveResult", "NOISY_KEYS", "Policy", "agent_builder",
    "approval_graph", "approve_all",
    "as_policy", "ask_person", "changes", "checkpoint_id", "decision", "deny_all", "drive", "find", "fingerprint",
    "fork", "history", "pending", "plot_checkpoint_tree", "replay", "resume", "resume_command",
    "resume_in_new_process", "scripted_person", "show", "snapshots", "sqlite_checkpointer", "terminal_person",
    "thread_config", "tool_policy",
]

if __name__ == "__main__":
    raise SystemExit(_worker())
