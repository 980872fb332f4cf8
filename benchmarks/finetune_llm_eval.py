"""Benchmark: chapter 2's labelled evaluation (70 questions over SafetyScenes test scenes) on the base
SmolLM2-135M and on the same model with the chapter 4 LoRA adapter baked in, both on
onnxruntime-genai at one precision (fp32 by default) with the same prompts and constrained decoding.

This is the before/after of chapter 4 part B: the instruction data never used the evaluation scenes
(``efsora finetune llm-data`` decontaminates against them and proves it). Writes every answer to
``benchmarks/results/finetune_llm_eval.csv`` and the summary to ``finetune_llm_eval.json``.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_llm_eval.py --adapter RUN/adapter
     [--questions 70] [--configs standard/direct tools/direct] [--precision fp32] [--skip-base]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def _evaluate(client, questions, configs):
    from efsora_helpers.reasoner import VisualReasoner
    from efsora_helpers.reasoner.evaluation import evaluate

    rows = []
    for config in configs:
        mode, strategy = config.split("/")
        t0 = time.perf_counter()
        answers = evaluate(lambda: VisualReasoner(client), questions, mode=mode, strategy=strategy)
        took = time.perf_counter() - t0
        for a in answers:
            rows.append({**a.row(), "seconds_total": round(took, 1)})
        n_ok = sum(a.correct for a in answers)
        print(f"{client.label} {config}: {n_ok}/{len(answers)} correct, "
              f"{sum(a.valid for a in answers)}/{len(answers)} valid, {took:.0f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, required=True, help="the adapter folder of an `efsora finetune lora` run")
    ap.add_argument("--questions", type=int, default=70)
    ap.add_argument("--configs", nargs="+", default=["standard/direct", "tools/direct"])
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--skip-base", action="store_true", help="evaluate the tuned model only")
    ap.add_argument("--out", type=Path, default=RESULTS / "finetune_llm_eval")
    args = ap.parse_args()

    os.environ["EFSORA_LLM_PRECISION"] = args.precision  # the base model at the tuned one's precision
    import efsora_helpers as eh
    from efsora_helpers.finetuning.llm_lora import adapted_client
    from efsora_helpers.llm import LLMClient
    from efsora_helpers.reasoner.evaluation import load_eval_set

    eh.setup(quiet=True)
    questions = load_eval_set()[: args.questions]
    rows = []
    if not args.skip_base:
        rows += _evaluate(LLMClient("local"), questions, args.configs)
    rows += _evaluate(adapted_client(args.adapter, args.precision), questions, args.configs)
    df = pd.DataFrame(rows)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    summary = (df.groupby(["provider", "mode", "strategy"])
               .agg(n=("correct", "size"), correct=("correct", "sum"), valid=("valid", "sum"),
                    cv_ceiling=("cv_ceiling", "sum"), seconds=("seconds_total", "first"))
               .reset_index().to_dict(orient="records"))
    metrics_path = args.adapter.parent / "metrics.json"
    out = {
        "what": "chapter 2's evaluation, base vs LoRA-tuned SmolLM2-135M, same prompts and decoding, "
                f"onnxruntime-genai {args.precision}",
        "adapter": str(args.adapter),
        "training": json.loads(metrics_path.read_text()) if metrics_path.exists() else None,
        "results": [{k: (int(v) if hasattr(v, "item") and float(v).is_integer() else v) for k, v in r.items()}
                    for r in summary],
        "measured": time.strftime("%Y-%m-%d") + f", {os.cpu_count()}-core {platform.machine()} CPU, "
                    f"load {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
    }
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps(out["results"], indent=1, default=str))


if __name__ == "__main__":
    main()
