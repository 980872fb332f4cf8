"""Benchmark: what ultralytics' bias-lr kick (``warmup_bias_lr=0.1``) costs a transferred detector.

The detection grid (``efsora_helpers.finetuning.detect_grid``) starts the transferred strategies'
bias learning rate at lr0 (``warmup_bias_lr=0.0``) instead of ultralytics' default 0.1. This runs the
same fine-tune with each value and two seeds, everything else equal: ``finetune_all`` from the
shipped detector on the task's first 25 training scenes, 24 epochs (600 images, a quarter of the
grid's budget) at 416 px, with the grid's 25-scene warmup length (10 iterations), and reports test
mAP and how far the biases moved. Writes ``benchmarks/results/finetune_detect_bias_lr.csv``; read
by ``notebooks/finetuning/02_transfer.ipynb``. The shipped file came from the two commands below:
the second adds the kick at the grid's full budget (96 epochs), whose run without the kick is the
grid's own ``finetune_all`` row at 25 scenes (same code, seed and warmup iterations).
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_detect_bias_lr.py [--epochs 24] [--seeds 0 1]
     OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_detect_bias_lr.py --epochs 96 --seeds 0 --kicks 0.1 --append
"""

import argparse
import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "finetune_detect_bias_lr.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="finetune_all")
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--warmup-iterations", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--kicks", type=float, nargs="+", default=[0.1, 0.0], help="warmup_bias_lr values")
    ap.add_argument("--append", action="store_true", help="add rows to an existing CSV")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    import efsora_helpers as eh
    from efsora_helpers.finetuning.transfer import bias_lr_runs

    eh.setup(quiet=True)
    rows = bias_lr_runs(args.strategy, args.n, args.epochs, args.warmup_iterations, tuple(args.seeds),
                        tuple(args.kicks), log=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    append = args.append and args.out.exists()
    with args.out.open("a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if not append:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
