"""Benchmark: the four agent patterns (ReAct, Plan-and-Execute, Reflection, supervisor) on the labelled
task set (data/agent/tasks.yaml), graded from SafetyScenes ground truth and the workspace's actions.

Writes one row per pattern x task to benchmarks/results/agent_patterns.csv as it goes (a stopped run
keeps what it finished) and a summary with date, machine and load to agent_patterns.md. Asserts
nothing about the model: it measures it. Notebook: notebooks/agent/05_patterns.ipynb.
Run: OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/agent_patterns.py [--provider local]
     [--patterns react plan_execute] [--tasks ID ...] [--kinds injection ...] [--out CSV]
"""

import argparse
import csv
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import efsora_helpers as eh
from efsora_helpers.agent.evaluate import RESULT_COLUMNS, evaluate, results_path, summarise
from efsora_helpers.agent.patterns import DEFAULT_STEPS, PATTERNS
from efsora_helpers.agent.tasks import load_tasks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", default=None, help="local (default) or a hosted provider with a key")
    ap.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    ap.add_argument("--tasks", nargs="+", help="task ids (default: all)")
    ap.add_argument("--kinds", nargs="+", help="only these task kinds")
    ap.add_argument("--out", type=Path, default=None, help="CSV path (default benchmarks/results/agent_patterns.csv)")
    ap.add_argument("--workspaces", type=Path, default=None, help="keep the run folders here (default: a temp folder)")
    ap.add_argument("--merge", nargs="+", type=Path,
                    help="combine the CSVs of runs made in parallel (disjoint tasks) into --out, and summarise")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out or results_path())

    eh.setup(chapter="agent", quiet=True)
    from efsora_helpers.llm.catalog import default_model, resolve_provider

    provider = resolve_provider(args.provider)
    out = args.out or results_path()
    if provider != "local" and args.out is None:
        out = out.with_name(f"agent_patterns_{provider}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(kinds=tuple(args.kinds) if args.kinds else None, ids=args.tasks)
    start, load_start = time.time(), os.getloadavg()
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()

        def write(run):
            writer.writerow(run.row())
            fh.flush()

        runs = evaluate(tasks, args.patterns, provider=provider, workspace_root=args.workspaces, on_run=write)
    seconds, load_end = time.time() - start, os.getloadavg()
    table = summarise(runs)
    print(table.to_string())
    md = [
        "# Agent patterns on the labelled task set",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {seconds / 60:.1f} min",
        f"- provider: {provider} ({default_model(provider) or 'default model'}); {len(tasks)} tasks x "
        f"{len(args.patterns)} patterns = {len(runs)} runs",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
        f"at end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} (a shared machine: latencies include "
        "waiting for a core)",
        f"- step budgets (model calls): {', '.join(f'{p} {DEFAULT_STEPS[p]}' for p in args.patterns)}; perception "
        "cached per image within the run (the engine is deterministic)",
        f"- command: `{' '.join(['OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/agent_patterns.py'] + sys.argv[1:])}`",
        "",
        table.to_markdown(),
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def merge(parts: list[Path], out: Path) -> int:
    """One CSV (task order of the task set, pattern order) from parallel parts, and its summary."""
    import pandas as pd

    df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    dupes = df.duplicated(["task_id", "pattern", "provider"])
    if dupes.any():
        raise ValueError(f"{int(dupes.sum())} pattern x task rows appear in more than one part")
    order = {t.id: i for i, t in enumerate(load_tasks())}
    df = df.assign(_t=df["task_id"].map(order), _p=df["pattern"].map({p: i for i, p in enumerate(PATTERNS)}))
    df = df.sort_values(["_t", "_p"]).drop(columns=["_t", "_p"])
    df.to_csv(out, index=False)
    table = summarise(df)
    print(table.to_string())
    headers = []
    for p in parts:
        md = p.with_suffix(".md")
        if md.exists():
            headers += [f"## part {p.name}", *[line for line in md.read_text().splitlines() if line.startswith("- ")], ""]
    text = ["# Agent patterns on the labelled task set", "",
            f"- merged {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from {len(parts)} parts run at the same "
            f"time on disjoint tasks ({len(df)} runs, {df['task_id'].nunique()} tasks x {df['pattern'].nunique()} "
            "patterns); each part's date, machine and load follow", "", *headers, table.to_markdown(), ""]
    out.with_suffix(".md").write_text("\n".join(text))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
