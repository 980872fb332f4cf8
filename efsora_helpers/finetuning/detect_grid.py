"""Transfer-learning strategies for the new detection task, over labelled-set sizes: the grid.

Four ways to start (``STRATEGIES``), each trained on the first ``n`` training scenes of the task
(``data.train_subset_yaml``; the subsets nest) and measured on the task's test split:

* ``scratch``: ``yolov8n.yaml``, random weights; the reference transfer has to beat.
* ``finetune_all``: the shipped SafetyScenes detector, every layer trained at a lower learning rate.
* ``freeze_backbone``: the shipped detector with its backbone (layers 0-9) frozen (``freeze=10``).
* ``head_only``: everything but the Detect head frozen (``freeze=22``).

The shipped detector knows six of the task's nine classes; ultralytics rebuilds the head for nine
and copies every tensor whose shape still fits (the box branch and all but the last class layer).
Online, ``--init yolov8n.pt`` starts from the official COCO weights instead; offline nothing is
downloaded: the scratch model is built from the yaml.

**A fixed compute budget.** Every run sees the same number of training images (``image_passes``;
epochs = passes / n, rounded), so a size's row differs from another's by the data, not by the
optimiser steps it was given: 25 scenes get 8x the epochs of 200. Warmup is a fraction of the run,
and the transferred strategies warm their biases up from 0 like every other weight, rather than
falling from ultralytics' 0.1 (``warmup_bias_lr``), a kick meant for random weights (ultralytics
itself sets it to 0 when it picks AdamW for you). ``notebooks/finetuning/02_transfer.ipynb``
measures the kick on this task: its cost was within run-to-run noise, so the choice is hygiene.

Every run appends one row to ``benchmarks/results/finetune_detect_grid.csv``: strategy, size,
epochs, image size, schedule (optimizer, lr0, lrf, cosine, warmup), mAP50 and mAP50-95 on the
test split, AP50 per class, wall time (with ultralytics' validation after the last epoch) and the
mean seconds of a training epoch alone, machine and load. ``efsora finetune
detect-grid`` runs it. Taught in ``notebooks/finetuning/01_dataset.ipynb`` (the data) and the
chapter's transfer-learning notebook.
"""

from __future__ import annotations

import csv
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..paths import repo_root
from ..vocabulary import FINETUNE_CLASSES
from . import data

SHIPPED = "data/models/safetyscenes-yolov8n-det.pt"
RESULTS = "benchmarks/results/finetune_detect_grid.csv"


@dataclass(frozen=True)
class Strategy:
    name: str
    init: str | None  # weights to start from; None = the architecture yaml (random weights)
    freeze: int | None  # ultralytics ``freeze``: the first N modules of model.model get no gradient
    lr0: float
    warmup_fraction: float  # of the run's epochs
    description: str
    warmup_bias_lr: float = 0.0  # ultralytics' default 0.1 suits random weights only
    lrf: float = 0.1  # final learning rate = lr0 * lrf
    cos_lr: bool = True
    optimizer: str = "AdamW"  # explicit: "auto" would ignore lr0 and pick its own


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("scratch", None, None, 2e-3, 0.1, "yolov8n.yaml from random weights", warmup_bias_lr=0.1),
    Strategy("finetune_all", SHIPPED, None, 1e-3, 0.05, "shipped detector, all layers trained"),
    Strategy("freeze_backbone", SHIPPED, 10, 1e-3, 0.05, "shipped detector, backbone (layers 0-9) frozen"),
    Strategy("head_only", SHIPPED, 22, 2e-3, 0.0, "shipped detector, only the Detect head (layer 22) trained"),
)}

FIELDS = ["strategy", "n_train", "epochs", "imgsz", "batch", "seed", "init", "freeze", "optimizer", "lr0", "lrf",
          "cos_lr", "warmup_epochs", "warmup_bias_lr", "image_passes", "map50", "map50_95", *[f"ap50_{c}" for c in FINETUNE_CLASSES],
          "wall_s", "train_s_per_epoch", "machine", "ultralytics"]


def train_one(strategy: Strategy, data_yaml: Path, epochs: int, imgsz: int, batch: int, seed: int, project: Path,
              init: str | None = None, callbacks: dict | None = None) -> tuple[Path, float, list[float]]:
    """Train one run; returns the final weights, the wall time (with ultralytics' validation after
    the last epoch) and the seconds of each training epoch alone. ``callbacks`` maps ultralytics
    events (``on_train_batch_end``, ...) to functions of the trainer, to watch a run from outside."""
    from ultralytics import YOLO

    start_from = init or strategy.init
    if start_from is None:
        model = YOLO("yolov8n.yaml")
    else:
        path = Path(start_from)
        if not path.is_absolute() and (repo_root() / path).exists():
            path = repo_root() / path
        if not path.exists() and path.name != "yolov8n.pt":
            raise FileNotFoundError(f"no weights at {path}")
        model = YOLO(str(path) if path.exists() else path.name)  # yolov8n.pt downloads: online only
    name = f"{strategy.name}_n{data_yaml.stem.rsplit('_', 1)[-1]}"
    marks: list[float] = []
    model.add_callback("on_train_epoch_start", lambda trainer: marks.append(time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda trainer: marks.append(time.perf_counter()))
    for event, function in (callbacks or {}).items():
        model.add_callback(event, function)
    start = time.perf_counter()
    model.train(
        data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, seed=seed, deterministic=True, device="cpu",
        workers=0, amp=False, plots=False, verbose=False, val=False, project=str(project), name=name, exist_ok=True,
        pretrained=start_from is not None, freeze=strategy.freeze, optimizer=strategy.optimizer, lr0=strategy.lr0,
        lrf=strategy.lrf, cos_lr=strategy.cos_lr, warmup_epochs=round(strategy.warmup_fraction * epochs, 3),
        warmup_bias_lr=strategy.warmup_bias_lr,
        close_mosaic=max(1, epochs // 5), **data.train_augmentation(),
    )
    wall = time.perf_counter() - start
    epoch_s = [b - a for a, b in zip(marks[::2], marks[1::2])]
    return project / name / "weights" / "last.pt", wall, epoch_s  # final weights: no selection on val


def evaluate(weights: Path, data_yaml: Path, imgsz: int, split: str = "test") -> dict:
    """mAP50, mAP50-95 and AP50 per class on ``split`` (ultralytics' COCO-style 101-point AP)."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(data_yaml), split=split, imgsz=imgsz, batch=8, conf=0.001, iou=0.7,
                                     device="cpu", workers=0, plots=False, verbose=False)
    box = metrics.box
    per_class = dict.fromkeys(FINETUNE_CLASSES, 0.0)  # a class with no test instance stays 0 (none here)
    for k, index in enumerate(box.ap_class_index):
        per_class[FINETUNE_CLASSES[int(index)]] = float(box.ap50[k])
    return {"map50": float(box.map50), "map50_95": float(box.map), "per_class_ap50": per_class}


def epochs_for(n: int, image_passes: int) -> int:
    """Epochs that show ``n`` scenes about ``image_passes`` times in all (at least one epoch)."""
    return max(1, round(image_passes / n))


def run_grid(strategies: list[str], sizes: list[int], epochs: int | None = None, imgsz: int = 416,
             batch: int = 16, seed: int = 0, root: Path | None = None, results: Path | None = None,
             init: str | None = None, keep_runs: bool = False, task_sizes: dict[str, int] | None = None,
             image_passes: int | None = None, log=print) -> list[dict]:
    """Train and evaluate every (strategy, size); append a row per run to ``results``. Give either
    ``image_passes`` (the fixed budget: epochs = passes / size) or ``epochs`` (the same for every
    size). The task is prepared first (``data.prepare``; ``task_sizes`` defaults to 200 / 50 / 50,
    more training scenes if a size asks for them)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if (epochs is None) == (image_passes is None):
        raise ValueError("give either epochs or image_passes (the fixed budget), not both or neither")
    if any(n < 1 for n in sizes) or (epochs or image_passes) < 1 or imgsz < 32:
        raise ValueError("sizes, epochs and image passes must be positive and imgsz at least 32")
    from importlib.metadata import version

    root = Path(root or data.default_root())
    task_sizes = task_sizes or {**data.DEFAULT_SIZES, "train": max(max(sizes), data.DEFAULT_SIZES["train"])}
    data.prepare(root, sizes=task_sizes)
    results = Path(results or repo_root() / RESULTS)
    results.parent.mkdir(parents=True, exist_ok=True)
    project = root / "runs"
    test_yaml = root / "yolo" / "data.yaml"
    machine = (f"{os.cpu_count()} cores, {platform.machine()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, "
               f"load {os.getloadavg()[0]:.1f}")
    rows = []
    for n in sizes:
        subset = data.train_subset_yaml(root, n)
        run_epochs = epochs if image_passes is None else epochs_for(n, image_passes)
        for name in strategies:
            strategy = STRATEGIES[name]
            weights, wall, epoch_s = train_one(strategy, subset, run_epochs, imgsz, batch, seed, project, init)
            scores = evaluate(weights, test_yaml, imgsz)
            row = {"strategy": name, "n_train": n, "epochs": run_epochs, "imgsz": imgsz, "batch": batch, "seed": seed,
                   "init": init or strategy.init or "yolov8n.yaml", "freeze": strategy.freeze,
                   "optimizer": strategy.optimizer, "lr0": strategy.lr0, "lrf": strategy.lrf, "cos_lr": strategy.cos_lr,
                   "warmup_epochs": round(strategy.warmup_fraction * run_epochs, 3),
                   "warmup_bias_lr": strategy.warmup_bias_lr, "image_passes": n * run_epochs, "map50": round(scores["map50"], 4),
                   "map50_95": round(scores["map50_95"], 4),
                   **{f"ap50_{c}": round(v, 4) for c, v in scores["per_class_ap50"].items()},
                   "wall_s": round(wall, 1), "train_s_per_epoch": round(sum(epoch_s) / max(1, len(epoch_s)), 2),
                   "machine": machine,
                   "ultralytics": version("ultralytics")}
            _append(results, row)
            rows.append(row)
            log(f"{name:16s} n={n:4d}: mAP50 {row['map50']:.3f}  mAP50-95 {row['map50_95']:.3f}  "
                f"{row['train_s_per_epoch']:.1f} s per training epoch, {row['wall_s']:.0f} s in all")
            if not keep_runs:
                shutil.rmtree(weights.parent.parent, ignore_errors=True)
    return rows


def _append(path: Path, row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
