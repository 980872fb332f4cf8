"""Benchmark: the four agent patterns (ReAct, Plan-and-Execute, Reflection, supervisor) on the labelled
task set (data/agent/tasks.yaml), graded from SafetyScenes ground truth and the workspace's actions.

Writes one row per pattern x task to benchmarks/results/agent_patterns.csv as it goes (a stopped run
keeps what it finished) and a summary with date, machine and load to agent_patterns.md. Asserts
nothing about the model: it measures it. Notebook: notebooks/agent/05_patterns.ipynb.
Run: OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/agent_patterns.py [--provider local]
     [--patterns react plan_execute] [--tasks ID ...] [--kinds injection ...] [--out CSV]
     [--model smollm2-135m-warehouse] [--precision fp32]
Chapter 4's tuned model against the base at the same precision (agent_patterns_tuned.csv):
     --model smollm2-135m-instruct --precision fp32 --out A.csv, --model smollm2-135m-warehouse
     --out B.csv, then --merge A.csv B.csv --out benchmarks/results/agent_patterns_tuned.csv
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
from efsora_helpers.llm.ort_runtime import PRECISION, PRECISION_VARIABLE, PRECISIONS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", default=None, help="local (default) or a hosted provider with a key")
    ap.add_argument("--model", default=None,
                    help="a model id of the provider other than its default (local: smollm2-135m-warehouse, "
                         "chapter 4's tuned model); rows then name it as provider/model")
    ap.add_argument("--precision", default=None, choices=PRECISIONS,
                    help=f"the local base model's onnxruntime-genai precision (default {PRECISION}); the tuned "
                         "model is served at fp32 only")
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
    from efsora_helpers.llm.catalog import default_model, model_info, resolve_provider
    from efsora_helpers.llm.errors import UnknownModelError
    from efsora_helpers.llm.local import TUNED_MODEL_ID

    provider = resolve_provider(args.provider)
    if args.model:
        try:
            model_info(provider, args.model)
        except UnknownModelError as exc:
            ap.error(str(exc))
    if args.precision and (provider != "local" or args.model == TUNED_MODEL_ID) and args.precision != "fp32":
        ap.error(f"--precision {args.precision}: only the local base model has other precisions "
                 f"({TUNED_MODEL_ID} is served at fp32)")
    if args.precision:
        # Read when the base model loads (ort_runtime.load_runtime_model), as finetune_llm_eval does.
        os.environ[PRECISION_VARIABLE] = args.precision
    model = args.model or default_model(provider)
    precision = (("fp32" if model == TUNED_MODEL_ID else os.environ.get(PRECISION_VARIABLE) or PRECISION)
                 if provider == "local" else None)
    out = args.out or results_path()
    if args.out is None and (provider != "local" or args.model or args.precision):
        out = out.with_name("_".join(["agent_patterns", provider, *([args.model] if args.model else []),
                                      *([args.precision] if args.precision else [])]) + ".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(kinds=tuple(args.kinds) if args.kinds else None, ids=args.tasks)
    start, load_start = time.time(), os.getloadavg()
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()

        def write(run):
            writer.writerow(run.row())
            fh.flush()

        runs = evaluate(tasks, args.patterns, provider=provider, model=args.model, workspace_root=args.workspaces,
                        on_run=write)
    seconds, load_end = time.time() - start, os.getloadavg()
    table = summarise(runs)
    print(table.to_string())
    md = [
        "# Agent patterns on the labelled task set",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {seconds / 60:.1f} min",
        f"- provider: {provider} ({model or 'default model'}"
        f"{f', onnxruntime-genai {precision}' if precision else ''}); {len(tasks)} tasks x "
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
    table = summary_by_provider(df)
    print(table.to_string())
    headers = []
    for p in parts:
        md = p.with_suffix(".md")
        if md.exists():
            headers += [f"## part {p.name}", *[line for line in md.read_text().splitlines() if line.startswith("- ")], ""]
    split = ("run separately per model (each part's header says what it ran)" if df["provider"].nunique() > 1
             else "run at the same time on disjoint tasks")
    text = ["# Agent patterns on the labelled task set", "",
            f"- merged {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from {len(parts)} parts, {split} "
            f"({len(df)} runs, {df['task_id'].nunique()} tasks x {df['pattern'].nunique()} "
            "patterns); each part's date, machine and load follow", "", *headers, table.to_markdown(), ""]
    out.with_suffix(".md").write_text("\n".join(text))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def summary_by_provider(df):
    """:func:`summarise` per pattern, and per provider/model when the file holds more than one."""
    import pandas as pd

    if df["provider"].nunique() < 2:
        return summarise(df)
    return pd.concat({p: summarise(g) for p, g in df.groupby("provider", sort=False)}, names=["provider"])


if __name__ == "__main__":
    raise SystemExit(main())
