"""Benchmark: LoRA rank, alpha, dropout and target modules compared by measurement on SmolLM2-135M.

Every run starts from the same base (the shipped SmolLM2-135M-Instruct in bfloat16, as the shipped
adapter was trained), sees the same training examples in the same order (seed 0) for the same short
schedule, and is scored on the same validation examples (the 16 shortest of the validation split,
the set the shipped run reported) before training and every ``--eval-every`` steps. One factor
changes at a time from the shipped adapter's settings (rank 16, alpha 32, dropout 0.05, q,k,v,o);
two more seeds of the reference show how much of a difference is noise. Training is
``llm_lora.peft_model`` + ``llm_lora.train``, the loop ``efsora finetune lora`` runs.

Short runs rank configurations by early progress, not by final quality. Training examples are
tool-call turns (a few hundred tokens, the same family as the validation examples) so that a run
costs about a minute of one CPU thread. Taught in ``notebooks/finetuning/05_lora.ipynb``.

Writes ``benchmarks/results/finetune_lora_sweep.csv`` (one row per run, appended as each finishes)
and ``finetune_lora_sweep.md``.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_lora_sweep.py [--only reference rank=4 ...]
     [--steps 16] [--grad-accum 2] [--eval-every 4] [--val-n 16] [--out PATH_WITHOUT_SUFFIX]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import random
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TOOL_FAMILY_PREFIX = "tools:"  # llm_data's tool-call families: tools:count, tools:ppe, tools:zone, tools:sign


def configs() -> dict[str, tuple[str, dict]]:
    """name -> (the factor it varies, the LoraSettings fields it changes from the reference)."""
    from efsora_helpers.finetuning.llm_lora import TARGETS

    return {  # in the order they run: the main factors first, so that a cut-short sweep still says most
        "reference": ("reference", {}),
        "rank=4": ("rank", {"rank": 4, "alpha": 8.0}),
        "rank=64": ("rank", {"rank": 64, "alpha": 128.0}),
        "targets=q,v": ("targets", {"targets": TARGETS["q,v"]}),
        "targets=all linear": ("targets", {"targets": TARGETS["all linear"]}),
        "seed=1": ("seed", {"seed": 1}),
        "alpha=16": ("alpha", {"alpha": 16.0}),
        "alpha=64": ("alpha", {"alpha": 64.0}),
        "dropout=0": ("dropout", {"dropout": 0.0}),
        "dropout=0.1": ("dropout", {"dropout": 0.1}),
        "seed=2": ("seed", {"seed": 2}),
    }


def reference_settings(steps: int, grad_accum: int, eval_every: int):
    """The shipped adapter's LoRA settings (data/models/smollm2-135m-warehouse/metrics.json) on a
    short schedule; patience above the number of evaluations so that every run takes every step."""
    from efsora_helpers.finetuning.llm_lora import TARGETS, LoraSettings

    return LoraSettings(rank=16, alpha=32.0, dropout=0.05, targets=TARGETS["q,k,v,o"], lr=1e-3, steps=steps,
                        grad_accum=grad_accum, warmup_steps=max(1, steps // 8), eval_every=eval_every,
                        patience=steps + 1, max_tokens=1024, dtype="bfloat16", seed=0)


def examples(n_train: int, n_val: int, seed: int = 0, data_dir: Path | None = None):
    """``n_train`` tool-call turns drawn from the training split with ``seed`` and the ``n_val``
    shortest validation examples, encoded as the training loop takes them."""
    from datasets import load_from_disk

    from efsora_helpers.finetuning.llm_data import default_out_dir
    from efsora_helpers.finetuning.llm_lora import encode, shortest

    data_dir = Path(data_dir or default_out_dir())
    if not (data_dir / "dataset_dict.json").exists():
        raise FileNotFoundError(f"no instruction data in {data_dir}: run `efsora finetune llm-data` first")
    data = load_from_disk(str(data_dir))
    pool = sorted((r for r in data["train"] if r["family"].startswith(TOOL_FAMILY_PREFIX)), key=lambda r: r["hash"])
    train_rows = random.Random(seed).sample(pool, n_train)
    val_rows = shortest(data["validation"], n_val)
    return [encode(r) for r in train_rows], [encode(r) for r in val_rows]


def run_one(name: str, factor: str, settings, base, train_ex, val_ex) -> dict:
    from efsora_helpers.finetuning.llm_lora import peft_model, train, trainable_parameters

    t0, cpu0 = time.perf_counter(), time.process_time()
    model = peft_model(settings, copy.deepcopy(base))
    log = train(model, train_ex, val_ex, settings, log=lambda r: print(
        f"  {name} step {r['step']}: train {r['train_loss']:.4f}"
        + (f", val {r['val_loss']:.4f}" if r["val_loss"] is not None else "") + f" ({r['seconds']:.1f} s)", flush=True))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    row = {"run": name, "factor": factor, "rank": settings.rank, "alpha": settings.alpha,
           "alpha_over_r": settings.alpha / settings.rank, "dropout": settings.dropout,
           "targets": ",".join(t.removesuffix("_proj") for t in settings.targets), "seed": settings.seed,
           "trainable": trainable_parameters(model), "steps": len(log.rows), "grad_accum": settings.grad_accum,
           "lr": settings.lr, "dtype": settings.dtype, "train_examples": len(train_ex), "val_examples": len(val_ex),
           "train_tokens": sum(len(e["input_ids"]) for e in train_ex),
           "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "train_s": round(sum(r["seconds"] for r in log.rows), 1),
           "val_step_0": log.initial_val_loss}
    for step, val in log.val_curve():
        row[f"val_step_{step}"] = val
    row["final_val_loss"] = log.rows[-1]["val_loss"]
    row["train_loss_by_step"] = " ".join(f"{r['train_loss']:.4f}" for r in log.rows)
    return row


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


def write_markdown(df: pd.DataFrame, path: Path, command: str) -> None:
    vals = sorted((c for c in df.columns if c.startswith("val_step_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    show = df[["run", "trainable", "cpu_s", "wall_s"] + vals].copy()
    show["trainable"] = show["trainable"].map("{:,}".format)
    show[["cpu_s", "wall_s"]] = show[["cpu_s", "wall_s"]].round(0).astype(int)
    show.columns = ["run", "trainable", "CPU s", "wall s"] + [c.replace("val_step_", "val@") for c in vals]
    first = df.iloc[0]
    lines = [
        "# LoRA sweep on SmolLM2-135M-Instruct: rank, alpha, dropout, target modules",
        "",
        f"Measured {', '.join(sorted(set(df['measured'])))} on {first['machine']}; 1-minute load average "
        f"{df['load_avg_1m'].min():.1f}-{df['load_avg_1m'].max():.1f} (a shared machine: wall times are indicative).",
        f"Command: `{command}`",
        "",
        f"Every run: bfloat16 base, lr {first['lr']:g}, {int(first['steps'])} optimiser steps x "
        f"{int(first['grad_accum'])} examples ({int(first['train_examples'])} tool-call turns, "
        f"{int(first['train_tokens']):,} tokens, same order), validation loss on answer tokens of the "
        f"{int(first['val_examples'])} shortest validation examples at the steps shown. Reference: rank 16, "
        "alpha 32, dropout 0.05, q,k,v,o (the shipped adapter's settings); each other run changes one factor "
        "(rank runs keep alpha = 2r); seed=1 and seed=2 are the reference with other seeds (initial A, dropout "
        "masks, example order), the noise to compare differences with. CPU s: the run's process time (model "
        "copy, training, evaluations); wall s includes waiting for a shared CPU. "
        "Short runs rank configurations by early progress, not by final quality.",
        "",
        show.to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", help=f"run only these (default: all): {', '.join(configs())}")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--val-n", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS / "finetune_lora_sweep", help="path without suffix")
    ap.add_argument("--fresh", action="store_true", help="start a new CSV instead of appending")
    args = ap.parse_args(argv)

    table = configs()
    unknown = [n for n in args.only or [] if n not in table]
    if unknown:
        print(f"unknown run {unknown[0]!r}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    import efsora_helpers as eh

    eh.setup(chapter="finetuning", quiet=True)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    from efsora_helpers.finetuning.llm_lora import load_base

    ref = reference_settings(args.steps, args.grad_accum, args.eval_every)
    train_ex, val_ex = examples(args.steps * args.grad_accum, args.val_n)
    base = load_base("none", ref.dtype)
    csv = args.out.with_suffix(".csv")
    done = pd.read_csv(csv) if csv.exists() and not args.fresh else pd.DataFrame()
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_lora_sweep.py " + " ".join(argv or sys.argv[1:])
    for name in args.only or table:
        factor, change = table[name]
        settings = dataclasses.replace(ref, **change)
        load = os.getloadavg()[0]
        row = run_one(name, factor, settings, base, train_ex, val_ex)
        row.update({"measured": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(),
                    "load_avg_1m": round((load + os.getloadavg()[0]) / 2, 2)})
        done = pd.concat([done[done["run"] != name] if len(done) else done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(csv, index=False, float_format="%.4f")
        print(f"{name}: {row['trainable']:,} trainable, val {row['val_step_0']:.4f} -> {row['final_val_loss']:.4f}, "
              f"{row['wall_s']:.0f} s", flush=True)
    order = {n: i for i, n in enumerate(table)}
    done = done.sort_values("run", key=lambda s: s.map(order)).reset_index(drop=True)
    done.to_csv(csv, index=False, float_format="%.4f")
    write_markdown(done, args.out.with_suffix(".md"), command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
