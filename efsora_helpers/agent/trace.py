"""Every step visible: the agent's trace as rows, a printed table, latency per node, and a picture
of the graph drawn from ``graph.get_graph()`` with matplotlib.

The picture is drawn here on purpose: LangGraph's ``draw_mermaid_png`` sends the diagram to a web
service (mermaid.ink), which an offline book must not call. :func:`mermaid` returns the Mermaid
text instead, which renders anywhere Mermaid does. Taught in ``notebooks/agent/01_graph.ipynb``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

COLUMNS = ("step", "node", "route", "tool", "arguments", "result", "guard", "seconds", "tokens")


def _rows(trace_or_result) -> list[dict]:
    if hasattr(trace_or_result, "trace"):
        return list(trace_or_result.trace)
    if isinstance(trace_or_result, dict):
        return list(trace_or_result.get("trace") or [])
    return list(trace_or_result or [])


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.2f}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def trace_records(trace_or_result) -> list[dict]:
    """The trace as flat records (one per node run) with a ``tokens`` column, for a DataFrame."""
    out = []
    for r in _rows(trace_or_result):
        rec = {k: r.get(k) for k in COLUMNS if k != "tokens"}
        rec["tokens"] = int(r.get("input_tokens") or 0) + int(r.get("output_tokens") or 0)
        out.append(rec)
    return out


def format_trace(trace_or_result, *, widths: dict[str, int] | None = None) -> str:
    """A fixed-width table of the trace: step, node, route, tool, arguments, result, guard, s, tokens."""
    w = {"step": 4, "node": 10, "route": 10, "tool": 18, "arguments": 34, "result": 44, "guard": 30,
         "seconds": 6, "tokens": 6}
    w.update(widths or {})
    recs = trace_records(trace_or_result)
    head = " ".join(f"{c[:w[c]]:<{w[c]}}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for rec in recs:
        lines.append(" ".join(f"{_cell(rec[c], w[c]):<{w[c]}}" for c in COLUMNS))
    return "\n".join(lines)


def print_trace(trace_or_result, **kw) -> None:
    print(format_trace(trace_or_result, **kw))


def latency_by_node(traces: Iterable) -> list[dict]:
    """Seconds and tokens per node over one or more traces: calls, total, mean, max."""
    acc: dict[str, list[tuple[float, int]]] = defaultdict(list)
    items = list(traces)
    if items and isinstance(items[0], dict) and "node" in items[0]:
        items = [items]  # one trace was passed
    for t in items:
        for r in _rows(t):
            acc[r.get("node", "?")].append((float(r.get("seconds") or 0.0),
                                            int(r.get("input_tokens") or 0) + int(r.get("output_tokens") or 0)))
    out = []
    for node, vals in acc.items():
        secs = [v[0] for v in vals]
        out.append({"node": node, "calls": len(vals), "seconds_total": round(sum(secs), 3),
                    "seconds_mean": round(sum(secs) / len(secs), 3), "seconds_max": round(max(secs), 3),
                    "tokens": sum(v[1] for v in vals)})
    return sorted(out, key=lambda d: -d["seconds_total"])


def mermaid(graph) -> str:
    """The graph as Mermaid text (``draw_mermaid``, which runs locally; never ``draw_mermaid_png``)."""
    return graph.get_graph().draw_mermaid()


def graph_edges(graph) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """Node ids and ``(source, target, conditional)`` edges of a compiled graph."""
    g = graph.get_graph()
    return list(g.nodes), [(e.source, e.target, bool(e.conditional)) for e in g.edges]


# Rows of the picture: the loop reads top to bottom, tool nodes side by side.
_LAYOUT_ROWS = [["__start__"], ["planner"], ["speech", "vision", "search", "calculator", "memory", "files", "action"],
                ["reasoner"], ["evaluator"], ["respond"], ["__end__"]]


def draw_graph(graph, ax=None, *, title: str | None = None):
    """Draw the compiled graph with matplotlib: boxes for nodes, solid arrows for fixed edges, dashed
    for conditional ones (the router). Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    nodes, edges = graph_edges(graph)
    pos: dict[str, tuple[float, float]] = {}
    placed = set()
    for depth, row in enumerate(_LAYOUT_ROWS):
        present = [n for n in row if n in nodes]
        for i, n in enumerate(present):
            pos[n] = ((i - (len(present) - 1) / 2) * 1.45, -depth * 1.25)
            placed.add(n)
    extra = [n for n in nodes if n not in placed]
    for i, n in enumerate(extra):  # anything new still shows
        pos[n] = (5.5, -i * 1.25)
    if ax is None:
        _, ax = plt.subplots(figsize=(10.5, 7.5))
    colour = {"planner": "#cfe2ff", "reasoner": "#d1e7dd", "evaluator": "#fff3cd", "respond": "#e2e3e5",
              "action": "#f8d7da", "__start__": "#ffffff", "__end__": "#ffffff"}
    boxes = {}
    for n, (x, y) in pos.items():
        label = {"__start__": "START", "__end__": "END"}.get(n, n)
        w, h = 1.25, 0.5
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                    fc=colour.get(n, "#e7f1ff"), ec="#333333", lw=1.0, zorder=2))
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3)
        boxes[n] = (x, y, w, h)
    xs_all = [p[0] for p in pos.values()]
    left, right = min(xs_all) - 1.0, max(xs_all) + 1.0
    channels = {"left": 0, "right": 0}
    for src, dst, conditional in edges:
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        ls = "--" if conditional else "-"
        colour_e = "#1f4e79" if conditional else "#333333"
        arrow = dict(arrowstyle="-|>", mutation_scale=11, lw=0.9, ls=ls, color=colour_e)
        rows_apart = round((y1 - y2) / 1.25)
        if rows_apart == 1 or (rows_apart == -1 and abs(x1 - x2) > 2.5):
            # neighbouring rows (or speech's short way back): a straight or gently bent arrow
            down = y2 < y1
            start = (x1, y1 - 0.25) if down else (x1 + (0.3 if x2 > x1 else -0.3), y1 + 0.25)
            end = (x2, y2 + 0.25) if down else (x2 - 0.62 if x1 < x2 else x2 + 0.62, y2)
            ax.add_patch(FancyArrowPatch(start, end, connectionstyle="arc3,rad=0.0" if down else "arc3,rad=-0.3",
                                         zorder=1, **arrow))
            continue
        # Skips a row, or goes back up: run along a side channel, outside every box.
        side = "right" if y2 > y1 else "left"
        channels[side] += 1
        cx = (right if side == "right" else left) + (0.22 if side == "right" else -0.22) * (channels[side] - 1)
        sx = x1 + (0.62 if side == "right" else -0.62)
        ex = x2 + (0.62 if side == "right" else -0.62)
        ax.plot([sx, cx, cx], [y1, y1, y2], ls=ls, color=colour_e, lw=0.9, zorder=1)
        ax.add_patch(FancyArrowPatch((cx, y2), (ex, y2), zorder=1, **arrow))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.8, max(xs) + 1.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or "warehouse agent: dashed = conditional edge (router, evaluator)", fontsize=10)
    return ax


__all__ = ["COLUMNS", "draw_graph", "format_trace", "graph_edges", "latency_by_node", "mermaid", "print_trace",
           "trace_records"]
