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


def detection_view(root: Path, view: Path, splits: list[str]) -> Path:
    """A YOLO tree whose ``labels/`` are the exact boxes (``labels_detect/``) of ``root``.

    ultralytics finds labels next to images, so a detector trained on the polygon labels would
    learn each polygon's box; the exact boxes are the ones the COCO ground truth uses. Images are
    hard-linked (copied where links are impossible), not duplicated on disk.
    """
    root, view = Path(root), Path(view)
    for split in splits:
        for sub, src in (("images", "images"), ("labels", "labels_detect")):
            (view / sub / split).mkdir(parents=True, exist_ok=True)
            for path in sorted((root / src / split).iterdir()):
                target = view / sub / split / path.name
                if target.exists():
                    target.unlink()
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
    shutil.copyfile(root / "data.yaml", view / "data.yaml")
    return view / "data.yaml"


def prepare_training_data(work: Path, n_train: int, n_val: int, task: str = "segment", progress: bool = True) -> Path:
    """Render the training set (and a validation set) into ``work``; returns the data.yaml for
    ``task`` (polygons for ``segment``, exact boxes for ``detect``)."""
    work = Path(work)
    marker = work / f".complete-{n_train}-{n_val}"
    if not marker.exists():
        shutil.rmtree(work, ignore_errors=True)
        write_dataset(work / "data", {"train": (TRAIN_SEED_BASE, n_train), "val": (VAL_SEED_BASE, n_val)}, progress)
        marker.write_text("")
    if task == "detect":
        return detection_view(work / "data", work / "detect", ["train", "val"])
    return work / "data" / "data.yaml"


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
    init: Path | None = None,
) -> dict:
    """Train a YOLOv8n detector (``task="detect"``) or segmenter (``"segment"``) from scratch, or
    continue from ``init`` weights (whose training record is kept as the first stage)."""
    from ultralytics import YOLO

    data = prepare_training_data(work, n_train, n_val, task)
    architecture = "yolov8n.yaml" if task == "detect" else "yolov8n-seg.yaml"
    model = YOLO(str(init)) if init else YOLO(architecture)
    if init and model.task != task:  # a detector's weights initialise a segmenter's shared layers
        model = YOLO(architecture).load(str(init))
    previous = json.loads(Path(init).with_suffix(".train.json").read_text()) if init else None
    start = time.perf_counter()
    results = model.train(
        data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, device=device, seed=seed,
        deterministic=True, pretrained=bool(init), amp=False, workers=2, close_mosaic=max(1, epochs // 8),
        project=str(Path(work) / "runs"), name=task, exist_ok=True, plots=False, verbose=False,
        # ultralytics' default overlap_mask=True packs all masks of an image into one map where
        # smaller masks overwrite larger ones: a worker's mask would be learned without the hard
        # hat and vest they wear. SafetyScenes masks overlap on purpose, so keep them separate.
        **({"overlap_mask": False} if task == "segment" else {}),
    )
    wall = time.perf_counter() - start
    best = Path(results.save_dir) / "weights" / "best.pt"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    model_name = "yolov8n" + ("" if task == "detect" else "-seg") + ".yaml (from scratch)"
    if init:
        model_name = f"initialised from {Path(init).name} (previous stage)"
    record = {
        "task": task,
        "weights": out.name,
        "arguments": {"model": model_name,
                      "epochs": epochs, "imgsz": imgsz, "batch": batch, "seed": seed, "device": device,
                      "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + n_train - 1],
                      "val_seeds": [VAL_SEED_BASE, VAL_SEED_BASE + n_val - 1],
                      "init": f"data/models/{Path(init).name}" if init else None,
                      **({"overlap_mask": False} if task == "segment" else {})},
        "wall_time_s": round(wall, 1),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                   f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}",
        "val_metrics": {k: round(float(v), 4) for k, v in results.results_dict.items()},
    }
    if previous:
        record["previous_stage"] = previous
        record["total_wall_time_s"] = round(wall + previous.get("total_wall_time_s", previous["wall_time_s"]), 1)
    out.with_suffix(".train.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def model_card(models_dir: Path) -> str:
    """``data/models/README.md`` from the training records and evaluation reports beside the weights."""
    import hashlib

    models_dir = Path(models_dir)
    lines = [
        "<!-- Generated by `efsora scenes model-card` from *.train.json and *.eval.json. -->",
        "",
        "# SafetyScenes models: model card",
        "",
        "YOLOv8n models trained **from scratch** (no pretrained weights: none can be downloaded",
        "offline) on SafetyScenes, the book's synthetic warehouse scenes. Classes: person, hard_hat,",
        "vest, forklift, pallet, sign.",
        "",
        "**Use them for** the book's synthetic scenes, offline, and to learn the training and",
        "evaluation workflow. **Do not use them for real photos**: they have never seen one. With",
        "internet, use the official COCO weights (`efsora assets fetch yolov8n-coco --download`) for",
        "real images (COCO has `person` but no hard hat, vest, forklift or pallet: fine-tune for those,",
        "as chapter 4 does).",
        "",
    ]
    for weights in sorted(models_dir.glob("*.pt")):
        record_path, eval_path = weights.with_suffix(".train.json"), weights.with_suffix(".eval.json")
        if not record_path.exists():
            continue
        record = json.loads(record_path.read_text())
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        lines += [f"## `{weights.name}` ({record['task']})", "",
                  f"- File: {weights.stat().st_size / 1e6:.1f} MB, sha256 `{digest}`."]
        stages = []
        stage = record
        while stage:
            stages.insert(0, stage)
            stage = stage.get("previous_stage")
        for number, st in enumerate(stages, 1):
            sa = st["arguments"]
            init = f" --init {sa['init']}" if sa.get("init") else ""
            lines += [
                f"- Stage {number}: `{sa['model']}`, {sa['epochs']} epochs at {sa['imgsz']} px, batch {sa['batch']}, "
                f"seed {sa['seed']}, {sa['device']}, {st['wall_time_s'] / 60:.1f} min on {st['machine']}; "
                f"train scenes = seeds {sa['train_seeds'][0]}-{sa['train_seeds'][1]}, validation = seeds "
                f"{sa['val_seeds'][0]}-{sa['val_seeds'][1]}. Command: "
                f"`efsora scenes train {st['task']} --epochs {sa['epochs']} --imgsz {sa['imgsz']}{init}`.",
            ]
            if st.get("note"):
                lines.append(f"  {st['note']}")
        if eval_path.exists():
            ev = json.loads(eval_path.read_text())
            lines += [
                f"- Measured on {ev['images']} **unseen** scenes (seeds {ev['test_seeds'][0]}-{ev['test_seeds'][1]}), "
                f"{ev['imgsz']} px, by `efsora scenes evaluate`:",
                f"  box mAP50 **{ev['box_map50']:.3f}**, box mAP50-95 **{ev['box_map50_95']:.3f}** (ultralytics); "
                f"pycocotools on the COCO export: mAP50 {ev.get('pycocotools_box_map50', float('nan')):.3f}, "
                f"mAP50-95 {ev.get('pycocotools_box_map50_95', float('nan')):.3f}.",
            ]
            if "mask_map50" in ev:
                line = f"  Mask mAP50 **{ev['mask_map50']:.3f}**, mask mAP50-95 {ev['mask_map50_95']:.3f}"
                if "pycocotools_mask_map50" in ev:
                    line += (f"; pycocotools on the COCO RLE masks: mAP50 {ev['pycocotools_mask_map50']:.3f}, "
                             f"mAP50-95 {ev['pycocotools_mask_map50_95']:.3f}")
                lines.append(line + ".")
            lines.append("  Box AP50 per class: " + ", ".join(f"{k} {v:.3f}" for k, v in ev["box_ap50_per_class"].items()) + ".")
            speed = ev["speed_ms_per_image"]
            lines.append(f"  Speed on that CPU: {speed.get('inference', float('nan')):.0f} ms inference per image "
                         f"(+{speed.get('preprocess', 0):.0f} ms pre, {speed.get('postprocess', 0):.0f} ms post).")
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- Synthetic, flat-shaded domain: expect a large drop on real photos.",
        "- Small objects (far hard hats) are the weakest class; see the per-class AP.",
        "- Trained on CPU with `deterministic=True`; retraining on a GPU gives similar, not identical, weights.",
        "- Wall times were measured while other work shared the 2 cores: read them as upper bounds.",
        "",
    ]
    return "\n".join(lines)
