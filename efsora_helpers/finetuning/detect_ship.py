"""Ship the grid's best detector: pick it on the validation split, strip it, write its card.

The grid (:mod:`.detect_grid`) scores every run on the task's test split. Picking the shipped model
by those scores would make the test split a second validation set, and the reported test mAP an
optimistic one. So ``select`` re-scores the kept runs on the *validation* split and picks the best
mAP50-95 there; the card then reports that run's test scores, untouched by the choice.

``ship`` copies the chosen weights without the optimiser state (ultralytics' ``strip_optimizer``),
and writes beside them a record (``.json``: the selection table, the run's settings and scores, the
command) and a model card (``.md``). The asset is ``safetyscenes9-yolov8n-det`` in
``asset_catalog.py``. ``efsora finetune detect-ship`` runs it. Evaluated in
``notebooks/finetuning/03_evaluation.ipynb``; the grid it comes from is plotted in
``notebooks/finetuning/02_transfer.ipynb``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

from ..assets import sha256_of
from ..paths import repo_root
from ..vocabulary import FINETUNE_CLASSES, NewClass
from . import data, detect_grid

ASSET = "safetyscenes9-yolov8n-det"
OUT = f"data/models/{ASSET}.pt"


def candidates(results: Path, runs: Path) -> list[dict]:
    """Grid rows whose weights were kept (``--keep-runs``), with ``weights`` added. A size run more
    than once keeps its last row (the weights on disk are the last run's)."""
    results, runs = Path(results), Path(runs)
    if not results.exists():
        raise FileNotFoundError(f"no grid results at {results}: run `efsora finetune detect-grid --keep-runs` first")
    with results.open() as f:
        rows = list(csv.DictReader(f))
    latest = {(r["strategy"], r["n_train"]): r for r in rows}
    found = []
    for (strategy, n), row in latest.items():
        weights = runs / f"{strategy}_n{n}" / "weights" / "last.pt"
        if weights.exists():
            found.append({**row, "weights": str(weights)})
    if not found:
        raise FileNotFoundError(f"none of the {len(latest)} grid runs in {results} kept its weights under {runs}: "
                                "re-run the grid with --keep-runs")
    return found


def select(rows: list[dict], root: Path, imgsz: int | None = None, log=print) -> tuple[dict, list[dict]]:
    """Score every candidate on the validation split; return the best by mAP50-95 and the table."""
    val_yaml = Path(root) / "yolo" / "data.yaml"
    table = []
    for row in rows:
        scores = detect_grid.evaluate(Path(row["weights"]), val_yaml, imgsz or int(row["imgsz"]), split="val")
        table.append({"strategy": row["strategy"], "n_train": int(row["n_train"]),
                      "val_map50": round(scores["map50"], 4), "val_map50_95": round(scores["map50_95"], 4),
                      "test_map50_95": float(row["map50_95"])})
        log(f"{row['strategy']:16s} n={row['n_train']:>4s}: validation mAP50-95 {scores['map50_95']:.3f}")
    best = max(range(len(rows)), key=lambda i: (table[i]["val_map50_95"], table[i]["n_train"]))
    return rows[best], table


def ship(results: Path | None = None, root: Path | None = None, out: Path | None = None, log=print) -> dict:
    """Select, strip and copy the best run to ``out``; write ``out``'s record (.json) and card (.md)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    root = Path(root or data.default_root())
    results = Path(results or repo_root() / detect_grid.RESULTS)
    out = Path(out or repo_root() / OUT)
    best, table = select(candidates(results, root / "runs"), root, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_suffix(".tmp.pt")
    shutil.copyfile(best["weights"], staging)
    if not strip_optimizer(str(staging)):  # drops the optimiser state, keeps the EMA weights in fp16
        staging.unlink(missing_ok=True)
        raise ValueError(f"{best['weights']} is not an ultralytics checkpoint")
    staging.replace(out)
    ap = {c: float(best[f"ap50_{c}"]) for c in FINETUNE_CLASSES}
    digest, size = sha256_of(out)  # the registry's own hash, so the catalog entry can be pasted
    record = {
        "asset": ASSET, "file": out.name, "sha256": digest, "bytes": size,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "classes": list(FINETUNE_CLASSES), "new_classes": [c.value for c in NewClass],
        "selected_by": "validation mAP50-95 over the grid's kept runs (the test split is not used to choose)",
        "selection": table,
        "run": {k: best[k] for k in ("strategy", "n_train", "epochs", "imgsz", "batch", "seed", "init", "freeze",
                                     "optimizer", "lr0", "lrf", "cos_lr", "warmup_epochs", "warmup_bias_lr",
                                     "image_passes", "wall_s", "train_s_per_epoch", "machine", "ultralytics")},
        "test": {"map50": float(best["map50"]), "map50_95": float(best["map50_95"]), "ap50_per_class": ap},
        "task_seeds": {split: len(s) for split, s in data.task_seeds().items()},
        "seed_range": [data.SEED_BASE, max(max(s) for s in data.task_seeds().values())],
        "command": ("efsora finetune data && efsora finetune detect-grid --keep-runs && "
                    "efsora finetune detect-ship"),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(card(record))
    log(f"shipped {best['strategy']} n={best['n_train']} to {out} (test mAP50-95 {record['test']['map50_95']:.3f})")
    return record


def card(record: dict) -> str:
    """The model card, from the record ``ship`` writes."""
    run, test = record["run"], record["test"]
    per_class = ", ".join(f"{c} {v:.3f}" for c, v in test["ap50_per_class"].items())
    rows = "\n".join(f"| {r['strategy']} | {r['n_train']} | {r['val_map50_95']:.3f} | {r['test_map50_95']:.3f} |"
                     for r in sorted(record["selection"], key=lambda r: (r["strategy"], r["n_train"])))
    seeds, (first, last) = record["task_seeds"], record["seed_range"]
    blind = [c for c, v in test["ap50_per_class"].items() if v < 0.05]
    blind_line = (f"\n- **Does not detect {', '.join(blind)}** (test AP50 below 0.05): see the failure cases in "
                  "notebook 03." if blind else "")
    return f"""<!-- Written by `efsora finetune detect-ship` ({record['date']}); the record is {Path(record['file']).with_suffix('.json').name}. -->

# `{record['file']}`: the fine-tuned 9-class SafetyScenes detector (model card)

Registered asset `{record['asset']}`, {record['bytes'] / 1e6:.1f} MB, sha256 `{record['sha256']}`.
Chapter 4's transfer-learning grid, best run: YOLOv8n, strategy `{run['strategy']}` from
`{run['init']}`, trained on {run['n_train']} labelled scenes of the new task.

- **Classes** ({len(record['classes'])}): {', '.join(record['classes'])}. New to this model:
  {', '.join(record['new_classes'])}; the other six are the shipped detector's.
- **Use it for** the book's synthetic warehouse scenes (chapter 4's task: about a third at night),
  offline. **Not for real photos**: it has never seen one. Online, the same grid fine-tunes the
  official COCO weights (`efsora finetune detect-grid --init yolov8n.pt`).
- **Training**: {run['epochs']} epochs ({run['image_passes']} image passes, the grid's fixed budget) at
  {run['imgsz']} px, batch {run['batch']}, seed {run['seed']}, {run['optimizer']} lr0 {run['lr0']} with
  cosine decay to lr0 x {run['lrf']}, warmup {run['warmup_epochs']} epochs, freeze {run['freeze'] or 'none'};
  {float(run['wall_s']) / 60:.1f} min on {run['machine']} (ultralytics {run['ultralytics']}).
  The task's scenes are seeds {first}-{last}, each assigned to train, validation or test by a hash of
  its seed ({seeds['train']} / {seeds['val']} / {seeds['test']} scenes); this run trained on the first
  {run['n_train']} training scenes.
- **Chosen on the validation split**: {record['selected_by']}.
- **Test split** ({seeds['test']} scenes, never used for training or choosing): box mAP50 **{test['map50']:.3f}**, mAP50-95 **{test['map50_95']:.3f}** (ultralytics).
  AP50 per class: {per_class}. `notebooks/finetuning/03_evaluation.ipynb` re-checks it with
  pycocotools, by lighting, with a confusion matrix and failure cases.
- **Reproduce**: `{record['command']}` (CPU hours; one seed).

## Selection table

| strategy | labelled scenes | validation mAP50-95 | test mAP50-95 |
| --- | --- | --- | --- |
{rows}

## Limits
{blind_line}
- Synthetic, flat-shaded domain: expect a large drop on real photos.
- 50 test scenes and one training seed: differences of a few points of mAP between runs are
  within run-to-run noise.
- Trained on CPU with `deterministic=True`; a GPU run gives similar, not identical, weights.
- Wall times were measured while other work shared the two cores (the load above is the one at
  the grid's start): read them as upper bounds.
"""
