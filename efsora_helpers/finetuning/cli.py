"""``efsora finetune ...``: chapter 4 from the command line.

One ``finetune`` parser; each part of the chapter adds its own actions below it:

* part B (the LLM): ``efsora finetune llm-data`` builds the instruction data set
  (:mod:`.llm_data`); ``efsora finetune lora`` trains a LoRA or QLoRA adapter (:mod:`.llm_lora`);
  ``--preset`` trains a 7-8B model with QLoRA on a GPU (:mod:`.gpu_presets`).
* part A (the detector) adds its actions in :func:`_cv_commands`.

Errors a user can fix end with one line and exit code 2 (``efsora_helpers.cli.main``).
"""

from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("finetune", help="chapter 4: fine-tune the detector and the local LLM")
    s = p.add_subparsers(dest="action", required=True)
    _cv_commands(s)
    _llm_commands(s)


# ---- part A: the detector ------------------------------------------------------------------------
#: ``data.DEFAULT_SIZES``, spelled here so that building the parser imports no OpenCV (a test checks).
TASK_SIZES = {"train": 200, "val": 50, "test": 50}


def _cv_commands(s) -> None:
    """Part A's actions (transfer learning for the detector) register here."""
    d = s.add_parser("data", help="render the new detection task and prepare it (dedup, splits, YOLO + COCO)")
    d.add_argument("--out", type=Path, help="output folder (default: $EFSORA_HOME/finetuning/detect-task)")
    for split, n in TASK_SIZES.items():
        d.add_argument(f"--{split}", type=int, default=n, help=f"{split} scenes (default {n})")
    d.set_defaults(func=_cv_data)
    g = s.add_parser("detect-grid", help="transfer-learning strategies x labelled-set sizes -> results CSV")
    g.add_argument("--strategies", default="scratch,finetune_all,freeze_backbone,head_only",
                   help="comma-separated, from: scratch, finetune_all, freeze_backbone, head_only")
    g.add_argument("--sizes", default="25,50,100,200", help="comma-separated numbers of labelled training scenes")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--image-passes", type=int, default=2400,
                        help="the fixed budget: every run sees this many training images (epochs = passes / size)")
    budget.add_argument("--epochs", type=int, help="instead: the same number of epochs at every size")
    g.add_argument("--imgsz", type=int, default=416, help="416: the size the shipped detector was trained at")
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--data", type=Path, help="prepared task folder (default: $EFSORA_HOME/finetuning/detect-task)")
    g.add_argument("--results", type=Path, help="CSV to append to (default: benchmarks/results/finetune_detect_grid.csv)")
    g.add_argument("--keep-runs", action="store_true", help="keep every run's weights (default: delete them)")
    g.add_argument("--init", help="start the transfer strategies from these weights instead of the shipped "
                                  "detector (online: yolov8n.pt, the official COCO weights)")
    g.set_defaults(func=_cv_grid)
    sh = s.add_parser("detect-ship", help="pick the grid's best kept run on the validation split and ship it "
                                          "as data/models/safetyscenes9-yolov8n-det.pt with its card")
    sh.add_argument("--results", type=Path, help="grid CSV (default: benchmarks/results/finetune_detect_grid.csv)")
    sh.add_argument("--data", type=Path, help="prepared task folder (default: $EFSORA_HOME/finetuning/detect-task)")
    sh.add_argument("--out", type=Path, help="weights to write (default: data/models/safetyscenes9-yolov8n-det.pt)")
    sh.set_defaults(func=_cv_ship)


def _cv_data(args) -> int:
    from ..env import setup
    from .data import prepare

    setup(quiet=True)
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    report = prepare(args.out, sizes=sizes, progress=True)
    print(f"{report['captures']} captures, {report['exact_duplicate_groups']} exact and "
          f"{report['near_duplicate_groups']} near duplicate groups, removed {len(report['removed'])}; "
          f"images per split {report['images']}; seeds in two splits: {len(report['seeds_in_two_splits'])}")
    for check in report["cross_check"]:
        print(f"YOLO vs COCO, {check['split']}: {check['boxes']} boxes, max corner difference {check['max_px']} px, "
              f"{check['class_mismatches']} class mismatches")
    return 0


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated whole numbers, not {text!r}") from None
    if not values:
        raise ValueError(f"no {what} given")
    return values


def _cv_grid(args) -> int:
    from ..env import setup
    from .detect_grid import run_grid

    setup(quiet=True)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    run_grid(strategies, _int_list(args.sizes, "sizes"), epochs=args.epochs,
             image_passes=None if args.epochs else args.image_passes, imgsz=args.imgsz, batch=args.batch,
             seed=args.seed, root=args.data, results=args.results, init=args.init, keep_runs=args.keep_runs)
    return 0


def _cv_ship(args) -> int:
    from ..env import setup
    from .detect_ship import ship

    setup(quiet=True)
    ship(args.results, args.data, args.out)
    return 0


# ---- part B: the LLM -----------------------------------------------------------------------------
def _llm_commands(s) -> None:
    d = s.add_parser("llm-data", help="build the LLM instruction data from SafetyScenes ground truth")
    d.add_argument("--out", type=Path, help="output folder (default: $EFSORA_HOME/finetuning/llm_data)")
    d.add_argument("--fresh-scenes", type=int, default=0,
                   help="also render this many new scenes (ground truth only) from unused seeds")
    d.add_argument("--val-fraction", type=float, default=0.1)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_llm_data)

    t = s.add_parser("lora", help="train a LoRA (or QLoRA) adapter for the local LLM on the llm-data output")
    t.add_argument("--data", type=Path, help="the llm-data folder (default: $EFSORA_HOME/finetuning/llm_data)")
    t.add_argument("--out", type=Path, help="run folder (default: $EFSORA_HOME/finetuning/lora_runs/<time>)")
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--alpha", type=float, default=16.0)
    t.add_argument("--dropout", type=float, default=0.05)
    t.add_argument("--targets", default="q,v", help="q,v | q,k,v,o | 'all linear' | comma-separated module names")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--steps", type=int, help="optimiser steps (default 400; with --preset, the preset's)")
    t.add_argument("--grad-accum", type=int, default=4)
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--eval-every", type=int, default=25)
    t.add_argument("--patience", type=int, default=4)
    t.add_argument("--max-tokens", type=int, default=1024)
    t.add_argument("--max-train", type=int, help="use at most this many training examples")
    t.add_argument("--max-val", type=int, default=64, help="validation examples (the shortest; 0: all)")
    t.add_argument("--quantization", choices=("none", "nf4"), default="none", help="nf4: QLoRA")
    t.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--base", help="an HF model id (or folder) to adapt instead of the shipped SmolLM2; "
                                  "loaded from the hub cache only")
    t.add_argument("--preset", help="a GPU QLoRA preset (mistral-7b-qlora, llama-3-8b-qlora): sets base, LoRA, "
                                    "optimiser and schedule; needs a CUDA GPU (book/finetuning/gpu_qlora.md)")
    t.add_argument("--dry-run", action="store_true", help="with --preset: print the preset and its memory estimate")
    t.set_defaults(func=_lora)


def _llm_data(args) -> int:
    from .llm_data import build_instruction_data

    report = build_instruction_data(out_dir=args.out, fresh_scenes=args.fresh_scenes,
                                    val_fraction=args.val_fraction, seed=args.seed)
    for line in report.lines():
        print(line)
    return 0


def _preset_settings(args):
    """``--preset``: the preset's settings on a CUDA GPU; without one, a one-line error (exit 2)."""
    import dataclasses

    from .gpu_presets import cuda_available, preset, summary

    p = preset(args.preset)
    if args.dry_run:
        print("\n".join(summary(p)))
        return None
    if not cuda_available():
        raise RuntimeError(f"--preset {p.name} needs a CUDA GPU and none is visible here; see "
                           f"book/finetuning/gpu_qlora.md, or add --dry-run to print the preset")
    print("\n".join(summary(p)))
    settings = p.settings(seed=args.seed)
    if args.steps:  # a short smoke run before the long one
        settings = dataclasses.replace(settings, steps=args.steps)
    return dataclasses.replace(settings, base=args.base) if args.base else settings


def _lora(args) -> int:
    from .llm_lora import TARGETS, LoraSettings, run

    if args.preset:
        settings = _preset_settings(args)
        if settings is None:
            return 0
    else:
        targets = TARGETS.get(args.targets) or tuple(x.strip() for x in args.targets.split(",") if x.strip())
        settings = LoraSettings(rank=args.rank, alpha=args.alpha, dropout=args.dropout, targets=tuple(targets),
                                lr=args.lr, steps=args.steps or 400, grad_accum=args.grad_accum, warmup_steps=args.warmup,
                                eval_every=args.eval_every, patience=args.patience, max_tokens=args.max_tokens,
                                quantization=args.quantization, dtype=args.dtype, seed=args.seed, base=args.base)
    metrics = run(settings, args.data, args.out, max_train=args.max_train, max_val=args.max_val)
    print(f"validation loss {metrics['initial_val_loss']:.4f} -> {metrics['best_val_loss']:.4f} "
          f"(best step {metrics['best_step']}), {metrics['seconds_per_step']:.1f} s/step, "
          f"adapter {metrics['adapter_mb']:.2f} MB")
    return 0
