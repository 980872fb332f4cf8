"""Detection and segmentation metrics written out from their definitions, in plain numpy.

IoU for boxes and masks, greedy non-maximum suppression, average precision (COCO's 101-point
interpolation and VOC's area under the curve) and a COCO-style evaluator that turns per-image
predictions into per-class AP and mAP. ``coco_reference`` runs pycocotools on the same inputs, so
the notebook can show two independent implementations agreeing. Taught in
``notebooks/perception/02_detection.ipynb``.

Inputs are one entry per image. A prediction is ``{"boxes": [N, 4], "scores": [N], "labels":
[N]}``; a ground truth is ``{"boxes": [M, 4], "labels": [M]}``. Boxes are ``x1, y1, x2, y2`` in
pixels, with the continuous convention (a box's width is ``x2 - x1``, no ``+ 1``) that COCO uses.
Labels are indices into ``class_names`` or the class names themselves.

>>> import numpy as np
>>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).round(3).tolist()
[[0.333, 0.0]]
>>> truth = [{"boxes": [[10, 10, 50, 50], [60, 60, 90, 90]], "labels": ["person", "sign"]}]
>>> preds = [{"boxes": [[12, 10, 50, 52], [0, 0, 5, 5], [60, 60, 90, 90]],
...           "scores": [0.9, 0.8, 0.3], "labels": ["person", "person", "sign"]}]
>>> report = evaluate_detections(preds, truth, ["person", "sign"])
>>> round(report.map50, 3), round(report.map50_95, 3)
(1.0, 0.95)

The person box overlaps its truth with IoU 0.907, so it counts as found at 9 of the 10 COCO
thresholds (0.5 to 0.9, not 0.95); the stray box scored below it costs nothing:

>>> round(report.per_class["person"]["ap50_95"], 3)
0.9
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # the same floats pycocotools uses
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_area(boxes) -> np.ndarray:
    """Area of each ``x1, y1, x2, y2`` box: ``(x2 - x1) * (y2 - y1)``."""
    boxes = _as_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise intersection over union of two sets of ``x1, y1, x2, y2`` boxes.

    Args:
        boxes_a: ``[N, 4]`` boxes.
        boxes_b: ``[M, 4]`` boxes.

    Returns:
        ``[N, M]`` float64 matrix; entry ``(i, j)`` is ``|a_i ∩ b_j| / |a_i ∪ b_j|``. Boxes that
        only touch along an edge have IoU 0. A pair whose union is empty (two zero-area boxes)
        gets 0 rather than 0/0.
    """
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    # Broadcasting [N, 1, 2] against [1, M, 2] gives the intersection corners of every pair.
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    width_height = np.clip(bottom_right - top_left, 0.0, None)  # disjoint boxes: no overlap
    intersection = width_height[..., 0] * width_height[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def mask_iou(masks_a, masks_b) -> np.ndarray:
    """Pairwise IoU of boolean masks ``[N, H, W]`` and ``[M, H, W]``, as an ``[N, M]`` matrix.

    Flattening each mask to a row of 0/1 turns every pairwise intersection into one matrix
    product. float32 counts pixels exactly up to 2**24 (a 4096 x 4096 mask), and its matrix
    product runs on BLAS, which integer products do not.
    """
    a, b = np.asarray(masks_a, dtype=bool), np.asarray(masks_b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks differ in size: {a.shape[1:]} vs {b.shape[1:]}")
    pixels = int(np.prod(a.shape[1:]))
    flat_a = a.reshape(a.shape[0], pixels).astype(np.float32)
    flat_b = b.reshape(b.shape[0], pixels).astype(np.float32)
    intersection = (flat_a @ flat_b.T).astype(np.float64)
    union = flat_a.sum(axis=1, dtype=np.float64)[:, None] + flat_b.sum(axis=1, dtype=np.float64) \
        - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nms(boxes, scores, iou_threshold: float = 0.7) -> np.ndarray:
    """Greedy non-maximum suppression; the same result as ``torchvision.ops.nms``.

    Visit boxes from the highest score down; keep a box unless a box kept before it overlaps it
    with IoU strictly greater than ``iou_threshold``. Equal scores keep their input order (a
    stable sort), which is what torchvision does.

    Returns:
        Indices of the kept boxes, int64, in decreasing order of score.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for rank, index in enumerate(order):
        if suppressed[rank]:
            continue
        keep.append(index)
        # One row of IoUs per kept box: memory stays O(N) instead of an N x N matrix.
        overlaps = box_iou(boxes[index], boxes[order[rank + 1:]])[0]
        suppressed[rank + 1:] |= overlaps > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes, scores, labels, iou_threshold: float) -> np.ndarray:
    """Class-wise NMS: boxes of different labels never suppress each other.

    Same result as ``torchvision.ops.batched_nms``: kept indices in decreasing order of score,
    equal scores in input order.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    boxes = _as_boxes(boxes)
    kept = [members[nms(boxes[members], scores[members], iou_threshold)]
            for members in (np.flatnonzero(labels == label) for label in np.unique(labels))]
    kept = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")]


def average_precision(recall, precision, method: str = "coco101") -> float:
    """Area under a precision-recall curve, with one of the two standard interpolations.

    Args:
        recall, precision: the curve after each detection, detections sorted by decreasing score
            (so ``recall`` never decreases).
        method: ``"coco101"`` makes precision non-increasing from the right (the best precision
            reachable at this recall or beyond), samples it at recall 0, 0.01, ..., 1 (the first
            point whose recall reaches each sample, ``searchsorted(side="left")``, exactly as
            pycocotools' ``COCOeval.accumulate``) and averages the 101 samples; samples beyond
            the highest recall reached count 0. ``"all_points"`` (PASCAL VOC 2010 onwards) sums
            that same non-increasing envelope times each step in recall: the exact area under it.

    Returns:
        AP in ``[0, 1]``; 0 for an empty curve.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if method == "coco101":
        if recall.size == 0:
            return 0.0
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        first_reaching = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
        reached = first_reaching < recall.size
        samples = np.zeros(COCO_RECALL_POINTS.size)
        samples[reached] = envelope[first_reaching[reached]]
        return float(samples.mean())
    if method == "all_points":
        # Sentinels: the curve starts at recall 0 and is closed at recall 1 with precision 0.
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        envelope = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))
    raise ValueError(f"unknown AP method {method!r}; use 'coco101' or 'all_points'")


def _parse(item: Mapping, class_names: Sequence[str], with_scores: bool):
    """One image's boxes, label indices and (for predictions) scores as numpy arrays."""
    boxes = _as_boxes(item["boxes"])
    # An inverted box has negative area: pycocotools then silently ignores the detection, and
    # the usual cause is x, y, w, h passed where x1, y1, x2, y2 was expected.
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError("boxes must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
    labels = np.asarray(item["labels"]).reshape(-1)
    if labels.dtype.kind in "US":
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(labels.tolist()) - index.keys())
        if unknown:
            raise ValueError(f"labels not in class_names: {unknown}")
        labels = np.array([index[name] for name in labels.tolist()], dtype=np.int64)
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"label indices must lie in [0, {len(class_names)})")
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    scores = None
    if with_scores:
        scores = np.asarray(item["scores"], dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    return boxes, labels, scores


def _match(detections, truths, iou_thresholds: np.ndarray) -> np.ndarray:
    """COCO's greedy matching for one image and one class.

    ``detections`` are already sorted by decreasing score. At each IoU threshold, each detection
    in turn takes the not-yet-matched ground truth it overlaps most, if that IoU reaches the
    threshold; otherwise it is a false positive. Returns ``[T, D]`` booleans: matched or not.
    """
    matched = np.zeros((len(iou_thresholds), len(detections)), dtype=bool)
    if len(detections) == 0 or len(truths) == 0:
        return matched
    ious = box_iou(detections, truths)
    last = ious.shape[1] - 1
    for t, threshold in enumerate(iou_thresholds):
        taken = np.zeros(len(truths), dtype=bool)
        for d in range(len(detections)):
            candidates = np.where(taken, -1.0, ious[d])  # a ground truth is matched at most once
            # On equal IoU pycocotools keeps the later ground truth, so search from the end.
            best = last - int(np.argmax(candidates[::-1]))
            if candidates[best] >= threshold:
                taken[best] = True
                matched[t, d] = True
    return matched


@dataclass
class _ClassResults:
    """Every evaluated detection of one class over the dataset, by decreasing score."""

    scores: np.ndarray  # [D]
    matched: np.ndarray  # [T, D] bool
    n_gt: int


def _collect(predictions, ground_truths, class_names, iou_thresholds,
             max_detections) -> list[_ClassResults]:
    """Match every image's detections, class by class, and pool them per class over the data."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction entries for {len(ground_truths)} images")
    n_classes = len(class_names)
    scores = [[] for _ in range(n_classes)]
    matched = [[] for _ in range(n_classes)]
    n_gt = np.zeros(n_classes, dtype=np.int64)
    for prediction, truth in zip(predictions, ground_truths):
        pred_boxes, pred_labels, pred_scores = _parse(prediction, class_names, with_scores=True)
        gt_boxes, gt_labels, _ = _parse(truth, class_names, with_scores=False)
        for c in range(n_classes):
            of_class = np.flatnonzero(pred_labels == c)
            # COCO caps detections per image *and category* (useCats=1), keeping the top scores.
            ranked = of_class[np.argsort(-pred_scores[of_class], kind="stable")][:max_detections]
            truths = gt_boxes[gt_labels == c]
            n_gt[c] += len(truths)
            scores[c].append(pred_scores[ranked])
            matched[c].append(_match(pred_boxes[ranked], truths, iou_thresholds))
    results = []
    for c in range(n_classes):
        class_scores = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        class_matched = (np.concatenate(matched[c], axis=1) if matched[c]
                         else np.zeros((len(iou_thresholds), 0), dtype=bool))
        # Stable, like pycocotools' mergesort: equal scores stay in image order.
        order = np.argsort(-class_scores, kind="stable")
        results.append(_ClassResults(class_scores[order], class_matched[:, order], int(n_gt[c])))
    return results


@dataclass
class DetectionReport:
    """Output of :func:`evaluate_detections`.

    Attributes:
        class_names: the evaluated classes, in order.
        iou_thresholds: ``[T]`` IoU thresholds.
        ap: ``[T, C]`` AP per threshold and class; nan for classes without ground truth.
        n_gt: ``[C]`` ground-truth boxes per class.
        n_pred: ``[C]`` evaluated detections per class (after the per-image cap).
        pr_curves: per class with ground truth, at the first IoU threshold (0.5 by default):
            ``{"recall", "precision", "scores"}`` arrays, one point per detection by decreasing
            score, not interpolated: plot them as they are or with the envelope AP uses.
    """

    class_names: list[str]
    iou_thresholds: np.ndarray
    ap: np.ndarray
    n_gt: np.ndarray
    n_pred: np.ndarray
    pr_curves: dict[str, dict[str, np.ndarray]]

    def _mean_over_classes(self, ap: np.ndarray) -> float:
        """Mean of ``ap[..., class]`` over classes with ground truth; nan when there are none."""
        valid = ap[..., self.n_gt > 0]
        return float(valid.mean()) if valid.size else float("nan")

    def _ap_at(self, iou: float) -> np.ndarray:
        rows = np.flatnonzero(np.isclose(self.iou_thresholds, iou))
        if rows.size == 0:
            raise ValueError(f"IoU {iou} was not among the evaluated thresholds")
        return self.ap[rows[0]]

    @property
    def map50(self) -> float:
        """Mean AP at IoU 0.5 over classes with ground truth (PASCAL VOC's headline number)."""
        return self._mean_over_classes(self._ap_at(0.5))

    @property
    def map50_95(self) -> float:
        """Mean AP over all thresholds (0.5:0.05:0.95 by default) and classes with ground truth:
        COCO's headline "AP"."""
        return self._mean_over_classes(self.ap)

    @property
    def per_class(self) -> dict[str, dict[str, float | int]]:
        """``class -> {"ap50", "ap50_95", "n_gt", "n_pred"}``; APs are nan without ground truth."""
        ap50, ap50_95 = self._ap_at(0.5), self.ap.mean(axis=0)
        return {name: {"ap50": float(ap50[c]), "ap50_95": float(ap50_95[c]),
                       "n_gt": int(self.n_gt[c]), "n_pred": int(self.n_pred[c])}
                for c, name in enumerate(self.class_names)}

    def table(self) -> pd.DataFrame:
        """One row per class plus an ``all`` row (the mAPs and the totals)."""
        frame = pd.DataFrame.from_dict(self.per_class, orient="index")
        frame.loc["all"] = [self.map50, self.map50_95, int(self.n_gt.sum()), int(self.n_pred.sum())]
        frame.index.name = "class"
        return frame.astype({"n_gt": int, "n_pred": int})


def evaluate_detections(predictions: Sequence[Mapping], ground_truths: Sequence[Mapping],
                        class_names: Sequence[str], iou_thresholds=None,
                        max_detections: int = 100, ap_method: str = "coco101") -> DetectionReport:
    """COCO-style box evaluation: per-class AP at each IoU threshold, and the mAPs.

    For each class, pool every image's detections, sort them by score, and walk down the list:
    each detection is a true positive if :func:`_match` paired it with a ground truth, a false
    positive otherwise. Precision and recall after each detection give the curve;
    :func:`average_precision` turns it into AP. This reproduces pycocotools' area range "all"
    (no crowd regions), including its cap of ``max_detections`` per image and category.

    Args:
        predictions: per image ``{"boxes": [N, 4] xyxy, "scores": [N], "labels": [N]}``.
        ground_truths: per image ``{"boxes": [M, 4] xyxy, "labels": [M]}``, same image order.
        class_names: the classes; labels are indices into it or the names themselves.
        iou_thresholds: defaults to COCO's 0.5, 0.55, ..., 0.95; ``map50``, ``per_class`` and
            ``table()`` need 0.5 among them.
        max_detections: highest-scoring detections kept per image and class.
        ap_method: ``"coco101"`` or ``"all_points"``, see :func:`average_precision`.
    """
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else np.asarray(
        iou_thresholds, dtype=np.float64).reshape(-1)
    results = _collect(predictions, ground_truths, class_names, thresholds, max_detections)
    ap = np.full((len(thresholds), len(class_names)), np.nan)
    pr_curves = {}
    for c, (name, result) in enumerate(zip(class_names, results)):
        if result.n_gt == 0:  # AP is undefined without positives; COCO marks it -1
            continue
        true_positives = np.cumsum(result.matched, axis=1)
        detections_so_far = np.arange(1, result.scores.size + 1)
        recall = true_positives / result.n_gt
        precision = true_positives / detections_so_far
        ap[:, c] = [average_precision(r, p, ap_method) for r, p in zip(recall, precision)]
        pr_curves[name] = {"recall": recall[0], "precision": precision[0], "scores": result.scores}
    return DetectionReport(
        class_names=list(class_names), iou_thresholds=thresholds, ap=ap,
        n_gt=np.array([r.n_gt for r in results]), n_pred=np.array([r.scores.size for r in results]),
        pr_curves=pr_curves,
    )


def precision_recall_at(predictions: Sequence[Mapping], ground_truths: Sequence[Mapping],
                        class_names: Sequence[str], confidence: float,
                        iou_threshold: float = 0.5, max_detections: int = 100) -> pd.DataFrame:
    """Precision, recall and F1 at one operating point: detections with score >= ``confidence``.

    Matching is the same as in :func:`evaluate_detections`. A detection's match depends only on
    detections scored above it, so matching everything once and then dropping low scores gives
    the same counts as matching only the kept detections.

    Returns:
        A frame indexed by class plus an ``all`` row (counts summed over classes: micro
        average), with columns ``tp, fp, fn, precision, recall, f1``. A ratio whose denominator
        is 0 (no detections kept, or no ground truth) is reported as 0.
    """
    results = _collect(predictions, ground_truths, class_names, np.array([iou_threshold]),
                       max_detections)
    rows = {}
    for name, result in zip(class_names, results):
        kept = result.scores >= confidence
        tp = int(result.matched[0, kept].sum())
        rows[name] = {"tp": tp, "fp": int(kept.sum()) - tp, "fn": result.n_gt - tp}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["tp", "fp", "fn"])
    frame.loc["all"] = frame.sum()
    tp, fp, fn = (frame[column].to_numpy(dtype=np.float64) for column in ("tp", "fp", "fn"))

    def ratio(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                         where=denominator > 0)

    frame["precision"] = ratio(tp, tp + fp)
    frame["recall"] = ratio(tp, tp + fn)
    frame["f1"] = ratio(2 * tp, 2 * tp + fp + fn)  # = 2PR / (P + R), without dividing by 0
    frame.index.name = "class"
    return frame


def coco_reference(predictions: Sequence[Mapping], ground_truths: Sequence[Mapping],
                   class_names: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> dict:
    """The same evaluation by pycocotools' ``COCOeval`` (bbox), as an independent check.

    Builds COCO-format ground truth and detections in memory (boxes become ``[x, y, w, h]``),
    runs evaluate/accumulate with maxDets ``[1, 10, 100]`` and averages the precision table over
    area range "all" and 100 detections, skipping the -1 entries (classes without ground truth).

    Args:
        image_sizes: per image ``(height, width)``, e.g. ``image.shape[:2]``.

    Returns:
        ``{"map50", "map50_95", "per_class_ap50_95"}``; a class without ground truth gets nan.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i + 1, "height": int(h), "width": int(w)}
              for i, (h, w) in enumerate(image_sizes)]
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(class_names)]
    truths, detections = [], []
    for image, prediction, truth in zip(images, predictions, ground_truths):
        gt_boxes, gt_labels, _ = _parse(truth, class_names, with_scores=False)
        boxes, labels, scores = _parse(prediction, class_names, with_scores=True)
        for box, label in zip(gt_boxes, gt_labels):
            truths.append(_coco_annotation(image["id"], box, label, id_=len(truths) + 1))
        for box, label, score in zip(boxes, labels, scores):
            detections.append(_coco_annotation(image["id"], box, label, id_=len(detections) + 1)
                              | {"score": float(score)})

    def coco_api(annotations):
        # Built directly rather than through COCO.loadRes, which fails on an empty result list.
        api = COCO()
        api.dataset = {"images": images, "categories": categories, "annotations": annotations}
        api.createIndex()
        return api

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports progress on stdout
        evaluator = COCOeval(coco_api(truths), coco_api(detections), "bbox")
        evaluator.params.maxDets = [1, 10, 100]
        evaluator.evaluate()
        evaluator.accumulate()
    return cocoeval_summary(evaluator, class_names)


def cocoeval_summary(evaluator, class_names: Sequence[str]) -> dict:
    """mAP50, mAP50-95 and per-class AP50-95 from an accumulated ``COCOeval``, averaged over area
    range "all" and the *last* ``maxDets`` entry (``summarize()`` would read maxDets=100 whatever
    was set), skipping the -1 entries that mark classes without ground truth."""
    # precision[iou threshold, recall point, class, area range, max detections]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]

    def mean_valid(table):
        valid = table[table > -1]
        return float(valid.mean()) if valid.size else float("nan")

    return {
        "map50": mean_valid(precision[0]),
        "map50_95": mean_valid(precision),
        "per_class_ap50_95": {name: mean_valid(precision[:, :, c])
                              for c, name in enumerate(class_names)},
    }


def _coco_annotation(image_id: int, box: np.ndarray, label: int, id_: int) -> dict:
    """A COCO annotation; ids start at 1 because COCOeval reads a match id of 0 as "unmatched"."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"id": id_, "image_id": image_id, "category_id": int(label) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
