"""Patterns x tasks: run each agent pattern on each labelled task and grade it from ground truth.

Every run gets a fresh workspace (the task's input files written into it) and a fresh
``warehouse_tools(workspace)`` registry, so one run's actions, reports and files can never leak
into another's grade. The side-effect tools a run may use are decided from the *user's task text*
(:func:`~efsora_helpers.agent.patterns.default_grant`), never from what a tool returned.

Per run (:meth:`TaskRun.row`): success, steps (model calls), tool calls, invalid calls, refused
side-effect calls, repeats stopped, tokens, latency, loop-limit hit, unrequested actions taken.
:func:`summarise` aggregates per pattern. ``benchmarks/agent_patterns.py`` runs the whole grid and
writes ``benchmarks/results/agent_patterns.csv``; the notebook runs a small slice live and loads
the shipped file. Taught in ``notebooks/agent/05_patterns.ipynb``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from .patterns import PATTERNS, PatternResult, default_grant, run_pattern
from .tasks import AgentTask, TaskScore, prepare_workspace, score

RESULT_COLUMNS = ["task_id", "kind", "pattern", "provider", "success", "status", "steps", "tool_calls",
                  "invalid_calls", "refused_calls", "repeats", "unrequested_actions", "loop_limit_hit",
                  "expected_tools_used", "input_tokens", "output_tokens", "tokens", "latency_s", "answer", "reasons",
                  "error"]


def results_path() -> Path:
    from ..paths import repo_root

    return repo_root() / "benchmarks" / "results" / "agent_patterns.csv"


class CachedEngine:
    """Chapter 1's perception engine with its answers kept per image path for this process.

    The engine is deterministic on CPU, so perceiving the same image twice gives the same
    result; a grid of patterns x tasks perceives the same dozen images over and over, and the
    cache turns ~3 s per look into a dictionary lookup. The first look at each image is real."""

    def __init__(self, engine=None):
        self._engine = engine
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def engine(self):
        if self._engine is None:
            from ..perception.engine import PerceptionEngine

            self._engine = PerceptionEngine()
        return self._engine

    def perceive(self, path, *args, **kwargs):
        key = str(Path(path).resolve())
        with self._lock:
            if key not in self._cache or args or kwargs:
                self._cache[key] = self.engine.perceive(path, *args, **kwargs)
            return self._cache[key]


@lru_cache(maxsize=1)
def shared_engine() -> CachedEngine:
    return CachedEngine()


@dataclass
class TaskRun:
    """One pattern on one task: what it did (``result``) and its grade (``score``)."""

    task: AgentTask
    pattern: str
    provider: str
    result: PatternResult
    score: TaskScore
    workspace: Path

    def row(self) -> dict[str, Any]:
        r, t = self.result, self.task
        called = {e.name for e in r.tool_events if not e.invalid}
        wanted = set(t.expected_tools)
        return {
            "task_id": t.id, "kind": t.kind, "pattern": self.pattern, "provider": self.provider,
            "success": int(self.score.success), "status": r.status, "steps": r.steps, "tool_calls": r.tool_calls,
            "invalid_calls": r.invalid_calls, "refused_calls": r.refused_calls, "repeats": r.repeats,
            "unrequested_actions": len(self.score.unrequested_actions), "loop_limit_hit": int(r.loop_limit_hit),
            "expected_tools_used": round(len(called & wanted) / len(wanted), 3) if wanted else 1.0,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "tokens": r.tokens,
            "latency_s": round(r.seconds, 3), "answer": (r.answer or "")[:200],
            "reasons": "; ".join(self.score.reasons)[:300], "error": r.error or "",
        }

    def trace_record(self) -> dict[str, Any]:
        """The run as one JSON-able record (task, prompt, every tool call with its result, answer,
        grade): the shape chapter 4 turns into tool-calling training examples."""
        return {"task_id": self.task.id, "kind": self.task.kind, "prompt": self.task.prompt, "pattern": self.pattern,
                "provider": self.provider, "success": self.score.success, "answer": self.result.answer,
                "calls": [{"name": e.name, "arguments": e.arguments, "result": e.result[:500], "is_error": e.is_error,
                           "refused": e.refused} for e in self.result.tool_events]}


def run_task(pattern: str, task: AgentTask, *, llm, provider: str = "local", workspace_root: str | Path | None = None,
             engine_factory: Callable[[], Any] | None = None, max_steps: int | None = None, keep: bool = True,
             **kwargs) -> TaskRun:
    """One pattern on one task in a fresh workspace ``workspace_root/<pattern>-<task id>``."""
    from .tools import warehouse_tools

    root = Path(workspace_root or tempfile.mkdtemp(prefix="agent-eval-"))
    ws = root / f"{pattern}-{task.id}"
    if ws.exists():
        shutil.rmtree(ws)
    prepare_workspace(task, ws)
    registry = warehouse_tools(ws, engine_factory=engine_factory or shared_engine)
    result = run_pattern(pattern, task.prompt, llm=llm, registry=registry,
                         grant=default_grant(task.prompt, registry), max_steps=max_steps, **kwargs)
    graded = score(task, result, ws)
    run = TaskRun(task, pattern, provider, result, graded, ws)
    if not keep:
        shutil.rmtree(ws, ignore_errors=True)
    return run


def evaluate(tasks: Iterable[AgentTask], patterns: Iterable[str] = PATTERNS, *, llm=None, provider: str | None = None,
             workspace_root: str | Path | None = None, progress: bool = True,
             on_run: Callable[[TaskRun], None] | None = None, max_steps: int | None = None,
             model: str | None = None) -> list[TaskRun]:
    """Every pattern on every task (task by task, all patterns for one task before the next, so a
    run stopped early still compares the patterns on the same tasks). ``model``: a model id of the
    provider other than its default (e.g. chapter 4's ``smollm2-135m-warehouse``); the rows then
    name it, ``provider/model``, so two models' runs can share one results file."""
    from tqdm.auto import tqdm

    from ..llm.catalog import resolve_provider

    provider = resolve_provider(provider)
    if llm is None:
        from ..llm.langchain import chat_model

        # Room for a finish answer (300 characters) and bounded arguments; a small model that
        # wanders off stops here instead of at the context limit.
        llm = chat_model(provider, model, max_tokens=160)
    label = f"{provider}/{model}" if model else provider
    tasks, patterns = list(tasks), list(patterns)
    root = Path(workspace_root or tempfile.mkdtemp(prefix="agent-eval-"))
    runs = []
    bar = tqdm(total=len(tasks) * len(patterns), desc="patterns x tasks", disable=not progress)
    for task in tasks:
        for pattern in patterns:
            bar.set_postfix_str(f"{pattern}:{task.id}"[:40])
            run = run_task(pattern, task, llm=llm, provider=label, workspace_root=root, max_steps=max_steps)
            runs.append(run)
            if on_run is not None:
                on_run(run)
            bar.update(1)
    bar.close()
    return runs


def summarise(rows) -> "Any":
    """Per pattern: success rate, means of steps, tool calls, tokens, latency; sums of invalid calls,
    refused calls, loop-limit hits and unrequested actions; injection success."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame([r.row() if hasattr(r, "row") else r for r in rows])
    inj = df[df["kind"] == "injection"]
    out = df.groupby("pattern").agg(
        tasks=("task_id", "count"), success_rate=("success", "mean"), steps=("steps", "mean"),
        tool_calls=("tool_calls", "mean"), tokens=("tokens", "mean"), latency_s=("latency_s", "mean"),
        invalid_calls=("invalid_calls", "sum"), refused_calls=("refused_calls", "sum"),
        loop_limit_hits=("loop_limit_hit", "sum"), repeats=("repeats", "sum"),
        unrequested_actions=("unrequested_actions", "sum"))
    out["injection_success"] = inj.groupby("pattern")["success"].mean() if len(inj) else float("nan")
    order = [p for p in PATTERNS if p in out.index] + [p for p in out.index if p not in PATTERNS]
    return out.loc[order].round(3)


def load_results(path: str | Path | None = None):
    """The shipped full run (``benchmarks/results/agent_patterns.csv``) as a DataFrame."""
    import pandas as pd

    return pd.read_csv(path or results_path())


__all__ = ["CachedEngine", "RESULT_COLUMNS", "TaskRun", "evaluate", "load_results", "results_path", "run_task",
           "shared_engine", "summarise"]
