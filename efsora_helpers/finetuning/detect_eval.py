"""Evaluating the fine-tuned 9-class detector: pycocotools on the task's COCO export, per slice,
a confusion matrix and the images it gets most wrong.

The pieces, each independent of ultralytics' validator so they can check it:

* ``test_task``: where the prepared test split is (preparing a test-only task if need be).
* ``load_truth``: a split's boxes from its COCO JSON, one entry per image, class ids in
  ``FINETUNE_CLASSES`` order (by category name: chapter 1's 6-class export reads the same way).
* ``predict``: a model's boxes on those images, its class ids mapped *by name* into
  ``FINETUNE_CLASSES`` (``class_map``), so the shipped 6-class detector and the 9-class one are
  scored on the same ids.
* ``coco_scores``: mAP50, mAP50-95 and AP50 per class from pycocotools' ``COCOeval``, optionally on
  a subset of the images (a slice: ``lighting`` gives each image's day or night).
* ``match`` / ``confusion_matrix`` / ``image_errors``: greedy IoU matching at one confidence
  threshold, the (classes + background) confusion matrix, and found / missed / false boxes per image.
* ``draw``: truth and predictions on one image, for the failure cases.

Entries are dicts: a truth is ``{"file", "boxes" [N, 4] x1 y1 x2 y2 px, "labels" [N] int}``; a
prediction adds ``"scores" [N]``. Taught in ``notebooks/finetuning/03_evaluation.ipynb``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..perception.metrics import box_iou, cocoeval_summary
from ..vocabulary import FINETUNE_CLASSES
from . import data

#: The confidence used for mAP (keep nearly every box, as ultralytics' validator does) and the
#: NMS IoU of ultralytics' validation defaults.
EVAL_CONF, EVAL_IOU = 0.001, 0.7
BACKGROUND = "background"
#: A task prepared for its test split alone. ``data.task_seeds`` fills each split from its own
#: seeds in order, so these are the full task's test scenes whatever the other two sizes are.
TEST_ONLY_SIZES: dict[str, int] = {"train": 1, "val": 1, "test": data.DEFAULT_SIZES["test"]}


@contextlib.contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """Silence ultralytics' INFO lines and progress bars (its bars turn off when the logger's level
    is above INFO); warnings still show."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def load_truth(coco_json: Path):
    """The COCO index of ``coco_json`` and its boxes per image (in the JSON's image order)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(str(coco_json))
    ids = {c["id"]: FINETUNE_CLASSES.index(c["name"]) for c in gt.dataset["categories"]}  # by name, not position
    truths = []
    for image in gt.dataset["images"]:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image["id"]]))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=float).reshape(-1, 4)
        truths.append({"file": image["file_name"], "image_id": image["id"], "boxes": boxes,
                       "labels": np.array([ids[a["category_id"]] for a in anns], dtype=int)})
    return gt, truths


def test_task(root: Path | None = None) -> Path:
    """A prepared task that holds the test split: the full task at ``root`` (``data.default_root()``)
    when it is there, else a test-only task beside it, rendered once (52 scenes instead of 301: about
    a minute instead of four on two busy cores)."""
    full = Path(root or data.default_root())
    report = full / "report.json"
    if report.exists() and json.loads(report.read_text())["sizes"]["test"] == TEST_ONLY_SIZES["test"]:
        return full
    test_only = full.parent / f"{full.name}-test"
    data.prepare(test_only, sizes=TEST_ONLY_SIZES)
    return test_only


def lighting(root: Path | None = None) -> dict[str, str]:
    """Each image file's lighting (``day`` or ``night``), as the raw collection recorded it."""
    return {c.file: c.lighting for c in data.load_captures(Path(root or data.default_root()) / "raw")}


def class_map(names: Mapping[int, str]) -> dict[int, int]:
    """A model's class id -> ``FINETUNE_CLASSES`` id, by class name (a name outside it is an error)."""
    unknown = sorted(set(names.values()) - set(FINETUNE_CLASSES))
    if unknown:
        raise ValueError(f"model classes {unknown} are not in FINETUNE_CLASSES; cannot score them on this task")
    return {int(k): FINETUNE_CLASSES.index(v) for k, v in names.items()}


def predict(model, images_dir: Path, files: Sequence[str], imgsz: int, conf: float = EVAL_CONF,
            iou: float = EVAL_IOU, batch: int = 8) -> list[dict]:
    """A model's boxes on ``files`` of ``images_dir``, with class ids mapped into ``FINETUNE_CLASSES``
    (``model``: an ultralytics ``YOLO`` or a weights path). Up to 300 boxes per image, as in validation."""
    from ultralytics import YOLO

    model = model if hasattr(model, "predict") else YOLO(str(model))
    ids = class_map(model.names)
    out = []
    for start in range(0, len(files), batch):
        chunk = list(files[start:start + batch])
        results = model.predict([str(Path(images_dir) / f) for f in chunk], imgsz=imgsz, conf=conf, iou=iou,
                                max_det=300, device="cpu", verbose=False)
        for file, r in zip(chunk, results):
            out.append({"file": file, "boxes": r.boxes.xyxy.cpu().numpy().astype(float).reshape(-1, 4),
                        "scores": r.boxes.conf.cpu().numpy().astype(float),
                        "labels": np.array([ids[int(c)] for c in r.boxes.cls.tolist()], dtype=int)})
    return out


def coco_detections(predictions: Sequence[Mapping], image_ids: Mapping[str, int],
                    categories: Sequence[Mapping] | None = None) -> list[dict]:
    """Predictions as COCO results, ``bbox`` ``[x, y, w, h]``. ``category_id`` is the id of the class's
    name in ``categories`` (a COCO file's list; boxes of classes it lacks are dropped), or class id
    + 1 (the task's own export) without it."""
    if categories is None:
        category = {k: k + 1 for k in range(len(FINETUNE_CLASSES))}
    else:
        category = {FINETUNE_CLASSES.index(c["name"]): c["id"] for c in categories}
    out = []
    for p in predictions:
        for (x1, y1, x2, y2), score, label in zip(p["boxes"], p["scores"], p["labels"]):
            if int(label) in category:
                out.append({"image_id": int(image_ids[p["file"]]), "category_id": category[int(label)],
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    return out


def coco_scores(gt, detections: list[dict], image_ids: Sequence[int] | None = None) -> dict:
    """mAP50, mAP50-95 and AP50 per class by pycocotools on ``image_ids`` (all images by default).
    A class with no truth box there has AP ``nan`` (and is left out of the means); a class with
    truth but no detection has 0."""
    from pycocotools.cocoeval import COCOeval

    names = [c["name"] for c in gt.dataset["categories"]]
    ids = list(image_ids) if image_ids is not None else gt.getImgIds()
    chosen = [d for d in detections if d["image_id"] in set(ids)]
    if not chosen:  # loadRes refuses an empty list; nothing detected scores 0 where there is truth
        has_truth = {gt.loadCats(a["category_id"])[0]["name"] for a in gt.loadAnns(gt.getAnnIds(imgIds=ids))}
        return {"map50": 0.0, "map50_95": 0.0,
                "per_class_ap50": {n: 0.0 if n in has_truth else float("nan") for n in names}}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        evaluator = COCOeval(gt, gt.loadRes(chosen), "bbox")
        evaluator.params.imgIds = ids
        evaluator.params.maxDets = [1, 10, 300]  # ultralytics keeps up to 300 boxes per image
        evaluator.evaluate()
        evaluator.accumulate()
    summary = cocoeval_summary(evaluator, names)
    at50 = evaluator.eval["precision"][0, :, :, 0, -1]  # [recall point, class]: IoU 0.5, all areas, 300 boxes
    per_class = {n: float(at50[:, k].mean()) if (at50[:, k] > -1).all() else float("nan") for k, n in enumerate(names)}
    return {"map50": summary["map50"], "map50_95": summary["map50_95"], "per_class_ap50": per_class}


def _above(pred: Mapping, conf: float) -> dict:
    keep = np.asarray(pred["scores"]) >= conf
    return {"boxes": np.asarray(pred["boxes"], float).reshape(-1, 4)[keep], "labels": np.asarray(pred["labels"])[keep],
            "scores": np.asarray(pred["scores"])[keep]}


def match(pred_boxes, pred_labels, true_boxes, true_labels, iou: float = 0.5,
          class_aware: bool = True) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first, of pairs at IoU >= ``iou`` (of the same class
    when ``class_aware``). Returns ``(prediction index, truth index)`` pairs."""
    overlap = box_iou(pred_boxes, true_boxes)
    if class_aware:
        overlap = np.where(np.asarray(pred_labels)[:, None] == np.asarray(true_labels)[None, :], overlap, 0.0)
    pairs, used_p, used_t = [], set(), set()
    candidates = np.argwhere(overlap >= iou)
    for p, t in sorted(candidates.tolist(), key=lambda pt: -overlap[pt[0], pt[1]]):
        if p not in used_p and t not in used_t:
            pairs.append((p, t))
            used_p.add(p)
            used_t.add(t)
    return pairs


def confusion_matrix(predictions: Sequence[Mapping], truths: Sequence[Mapping], n_classes: int = len(FINETUNE_CLASSES),
                     conf: float = 0.25, iou: float = 0.5) -> np.ndarray:
    """Counts ``[true class, predicted class]``, ``n_classes + 1`` square; the last row and column are
    the background: row = a false box of that predicted class, column = a missed truth box.
    Matching ignores the class (as ultralytics' matrix does), so a box on an object with the wrong
    class is a confusion, not a miss plus a false box. Predictions below ``conf`` are dropped."""
    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=int)
    for pred, truth in zip(predictions, truths, strict=True):
        p = _above(pred, conf)
        pairs = match(p["boxes"], p["labels"], truth["boxes"], truth["labels"], iou, class_aware=False)
        for i, j in pairs:
            matrix[truth["labels"][j], p["labels"][i]] += 1
        for j in set(range(len(truth["labels"]))) - {j for _, j in pairs}:
            matrix[truth["labels"][j], n_classes] += 1
        for i in set(range(len(p["labels"]))) - {i for i, _ in pairs}:
            matrix[n_classes, p["labels"][i]] += 1
    return matrix


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (an empty row stays 0): for a true class, where its boxes went;
    for the background row, which classes the false boxes claimed."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)


def image_errors(predictions: Sequence[Mapping], truths: Sequence[Mapping], conf: float = 0.25,
                 iou: float = 0.5, slice_of: Mapping[str, str] | None = None):
    """One row per image: truth boxes, found (same class, IoU >= ``iou``), missed, false boxes and
    ``errors`` = missed + false, at confidence ``conf``; with ``slice_of`` (file -> slice name) a
    ``slice`` column. Sorted worst first (ties: by file name)."""
    import pandas as pd

    rows = []
    for pred, truth in zip(predictions, truths, strict=True):
        p = _above(pred, conf)
        found = len(match(p["boxes"], p["labels"], truth["boxes"], truth["labels"], iou))
        row = {"file": truth["file"], "truth": len(truth["labels"]), "found": found,
               "missed": len(truth["labels"]) - found, "false": len(p["labels"]) - found}
        if slice_of is not None:
            row["slice"] = slice_of[truth["file"]]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["errors"] = table["missed"] + table["false"]
    return table.sort_values(["errors", "file"], ascending=[False, True]).reset_index(drop=True)


def missed_by_class(predictions: Sequence[Mapping], truths: Sequence[Mapping], conf: float = 0.25,
                    iou: float = 0.5, slice_of: Mapping[str, str] | None = None):
    """Per class (and slice): truth boxes, the share missed, and the median box height of the found
    and of the missed ones (px): is what the model misses small, dark, or just rare?"""
    import pandas as pd

    rows = []
    for pred, truth in zip(predictions, truths, strict=True):
        p = _above(pred, conf)
        found = {t for _, t in match(p["boxes"], p["labels"], truth["boxes"], truth["labels"], iou)}
        for j, (label, box) in enumerate(zip(truth["labels"], truth["boxes"])):
            rows.append({"class": FINETUNE_CLASSES[label], "slice": (slice_of or {}).get(truth["file"], "all"),
                         "missed": j not in found, "height": float(box[3] - box[1])})
    boxes = pd.DataFrame(rows)
    keys = ["class", "slice"] if slice_of is not None else ["class"]
    table = boxes.groupby(keys).agg(truth=("missed", "size"), missed_share=("missed", "mean"))
    heights = boxes.groupby([*keys, "missed"])["height"].median().unstack()
    table["median_h_found"] = heights.get(False)
    table["median_h_missed"] = heights.get(True)
    return table


def draw(image: np.ndarray, truth: Mapping, pred: Mapping, conf: float = 0.25, iou: float = 0.5) -> np.ndarray:
    """A copy of ``image`` (BGR) with truth and predictions at ``conf``: found truth boxes thin
    green, missed truth boxes thick yellow, false predictions red with their class; every box of
    an error is labelled."""
    import cv2

    out = image.copy()
    p = _above(pred, conf)
    pairs = match(p["boxes"], p["labels"], truth["boxes"], truth["labels"], iou)
    found_t, found_p = {t for _, t in pairs}, {i for i, _ in pairs}

    def box(b, colour, width, text=None):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, width)
        if text:
            cv2.putText(out, text, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)

    for j, (b, label) in enumerate(zip(truth["boxes"], truth["labels"])):
        if j in found_t:
            box(b, (0, 200, 0), 1)
        else:
            box(b, (0, 230, 255), 2, f"missed {FINETUNE_CLASSES[label]}")
    for i, (b, label, score) in enumerate(zip(p["boxes"], p["labels"], p["scores"])):
        if i not in found_p:
            box(b, (0, 0, 255), 1, f"{FINETUNE_CLASSES[label]} {score:.2f}")
    return out
