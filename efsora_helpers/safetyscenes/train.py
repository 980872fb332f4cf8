"""Training the book's default detectors on SafetyScenes (YOLOv8n from scratch, on CPU).

Pretrained COCO weights cannot be downloaded offline, so the book trains its own small models
on its own data. ``efsora scenes train-detector`` renders a training set from fixed seeds (not
shipped: it regenerates byte for byte), trains ``yolov8n.yaml`` from scratch with a fixed seed,
validates on the shipped ``val`` split, and writes the weights and a training record (arguments,
wall time, machine, metrics) next to each other. Taught in ``notebooks/setup/safetyscenes.ipynb``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from .dataset import write_dataset

TRAIN_SEED_BASE = 500_000
VAL_SEED_BASE = 600_000


def prepare_training_data(work: Path, n_train: int, n_val: int, progress: bool = True) -> Path:
    """Render the training set (and a validation set) into ``work``; returns its data.yaml."""
    work = Path(work)
    marker = work / f".complete-{n_train}-{n_val}"
    if not marker.exists():
        shutil.rmtree(work, ignore_errors=True)
        write_dataset(work, {"train": (TRAIN_SEED_BASE, n_train), "val": (VAL_SEED_BASE, n_val)}, progress)
        marker.write_text("")
    return work / "data.yaml"


def train(
    task: str,
    out: Path,
    work: Path,
    n_train: int = 800,
    n_val: int = 100,
    epochs: int = 40,
    imgsz: int = 416,
    batch: int = 16,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train a YOLOv8n detector (``task="detect"``) or segmenter (``"segment"``) from scratch."""
    from ultralytics import YOLO

    data = prepare_training_data(work, n_train, n_val)
    model = YOLO("yolov8n.yaml" if task == "detect" else "yolov8n-seg.yaml")
    start = time.perf_counter()
    results = model.train(
        data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, device=device, seed=seed,
        deterministic=True, pretrained=False, amp=False, workers=2, close_mosaic=max(1, epochs // 8),
        project=str(Path(work) / "runs"), name=task, exist_ok=True, plots=False, verbose=False,
    )
    wall = time.perf_counter() - start
    best = Path(results.save_dir) / "weights" / "best.pt"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    record = {
        "task": task,
        "weights": out.name,
        "arguments": {"model": "yolov8n" + ("" if task == "detect" else "-seg") + ".yaml (from scratch)",
                      "epochs": epochs, "imgsz": imgsz, "batch": batch, "seed": seed, "device": device,
                      "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + n_train - 1],
                      "val_seeds": [VAL_SEED_BASE, VAL_SEED_BASE + n_val - 1]},
        "wall_time_s": round(wall, 1),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                   f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}",
        "val_metrics": {k: round(float(v), 4) for k, v in results.results_dict.items()},
    }
    out.with_suffix(".train.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
