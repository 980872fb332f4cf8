"""Detection metrics written from their definitions agree with torchvision and pycocotools, and
give the values worked out by hand."""

import doctest
import json

import numpy as np
import pytest
import torch
import torchvision

from efsora_helpers.paths import repo_root
from efsora_helpers.perception import metrics
from efsora_helpers.perception.metrics import (
    average_precision, batched_nms, box_iou, coco_reference, evaluate_detections, mask_iou, nms,
    precision_recall_at,
)

CLASSES = ["person", "hard_hat", "vest", "forklift", "pallet", "sign"]


def random_boxes(rng, n, size=100.0):
    top_left = rng.uniform(0, size, (n, 2))
    return np.concatenate([top_left, top_left + rng.uniform(1, size / 2, (n, 2))], axis=1)


# --- IoU -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_iou_matches_torchvision(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    expected = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert (expected > 0).any() and (expected == 0).any()  # both overlapping and disjoint pairs
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=0, atol=1e-12)


def test_box_iou_hand_cases():
    square = [0, 0, 10, 10]
    others = [
        [0, 0, 10, 10],  # identical: 1
        [20, 20, 30, 30],  # disjoint: 0
        [2, 2, 7, 7],  # contained: 25 / 100
        [10, 0, 20, 10],  # shares an edge, no area: 0
        [5, 0, 15, 10],  # half overlap: 50 / (100 + 100 - 50)
    ]
    np.testing.assert_allclose(box_iou([square], others), [[1.0, 0.0, 0.25, 0.0, 1 / 3]])
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # empty union: 0, not nan
    assert box_iou(np.zeros((0, 4)), others).shape == (0, 5)


def test_mask_iou_on_hand_made_masks():
    a = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2, :2] = True  # 4 pixels, top left
    a[1, :, :] = True  # 16 pixels
    b = np.zeros((3, 4, 4), dtype=bool)
    b[0, :2, :] = True  # 8 pixels, top half: overlaps a[0] in 4
    b[1, 2:, 2:] = True  # 4 pixels, bottom right: disjoint from a[0]
    b[2, :2, :2] = True  # same as a[0]
    expected = [[4 / 8, 0.0, 1.0],
                [8 / 16, 4 / 16, 4 / 16]]
    np.testing.assert_allclose(mask_iou(a, b), expected)
    assert mask_iou(np.zeros((1, 3, 3), bool), np.zeros((1, 3, 3), bool))[0, 0] == 0.0
    assert mask_iou(a[:0], b).shape == (0, 3)
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((1, 5, 5), bool))


# --- NMS -----------------------------------------------------------------------------------------

def clustered_detections(seed, n=120):
    """Boxes in a few clusters (so NMS has work), exact duplicates, and scores with ties."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 350, (8, 2))[rng.integers(0, 8, n)]
    half = rng.uniform(10, 40, (n, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1) + rng.normal(0, 4, (n, 4))
    boxes[n - 10:] = boxes[:10]  # exact duplicates: IoU 1 whatever the threshold
    scores = rng.integers(1, 20, n) / 20  # few distinct values: many ties
    labels = rng.integers(0, 3, n)
    return boxes.astype(np.float32), scores.astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision(seed, threshold):
    boxes, scores, labels = clustered_detections(seed)
    expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
    kept = nms(boxes, scores, threshold)
    assert 0 < len(kept) < len(boxes)
    np.testing.assert_array_equal(kept, expected.numpy())

    expected = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                           torch.from_numpy(labels), threshold)
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, threshold), expected.numpy())


def test_nms_suppresses_only_above_the_threshold_and_breaks_ties_by_index():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10]]  # IoU(0, 1) = 0.5 exactly
    scores = [0.9, 0.8, 0.9]
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1])  # 0.5 is not > 0.5
    np.testing.assert_array_equal(nms(boxes, scores, 0.49), [0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, [0, 0, 1], 0.49), [0, 2])
    assert nms(np.zeros((0, 4)), []).shape == (0,)
    assert batched_nms(np.zeros((0, 4)), [], [], 0.5).shape == (0,)


# --- Average precision ---------------------------------------------------------------------------

# Three ground truths; detections by decreasing score are TP, FP, TP, FP:
#   recall    = 1/3, 1/3, 2/3, 2/3
#   precision = 1,   1/2, 2/3, 1/2   -> non-increasing from the right: 1, 2/3, 2/3, 1/2
# coco101: recall samples 0.00..0.33 (34 of them) read precision 1, samples 0.34..0.66 (33) read
#   2/3, samples 0.67..1.00 (34) lie beyond the last recall and read 0: (34 + 33 * 2/3) / 101.
# all_points: recall steps of 1/3 at precision 1, 1/3 at 2/3, and the closing step to recall 1
#   at precision 0: 1/3 + 2/9 = 5/9.
RECALL = np.array([1, 1, 2, 2]) / 3
PRECISION = np.array([1, 1 / 2, 2 / 3, 1 / 2])
AP_COCO101 = 56 / 101
AP_ALL_POINTS = 5 / 9


def test_average_precision_by_hand():
    assert average_precision(RECALL, PRECISION, "coco101") == pytest.approx(AP_COCO101, abs=1e-12)
    assert average_precision(RECALL, PRECISION, "all_points") == pytest.approx(AP_ALL_POINTS,
                                                                               abs=1e-12)
    for method in ("coco101", "all_points"):
        assert average_precision([], [], method) == 0.0
        assert average_precision([0.5, 1.0], [1.0, 1.0], method) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_precision(RECALL, PRECISION, "voc07")


# --- Evaluation on a scene worked out by hand ----------------------------------------------------

HAND_CLASSES = ["person", "sign", "forklift"]  # forklift: a prediction but no ground truth


def hand_scene():
    truth = {"boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]],
             "labels": ["person", "person", "person", "sign"]}
    prediction = {
        "boxes": [[0, 0, 10, 10],  # person A, IoU 1: TP
                  [0, 0, 10, 9],  # A again (IoU 0.9), already taken: FP
                  [22, 0, 32, 10],  # person B at IoU 80/120 = 0.67: TP at 0.5, FP at 0.75
                  [100, 100, 110, 110],  # nothing there: FP
                  [60, 0, 70, 10],  # the sign: TP
                  [80, 0, 90, 10]],  # forklift that is not there
        "scores": [0.9, 0.8, 0.7, 0.6, 0.5, 0.3],
        "labels": [0, 0, 0, 0, 1, 2],
    }
    return [prediction], [truth]


def test_evaluate_detections_by_hand():
    predictions, truths = hand_scene()
    report = evaluate_detections(predictions, truths, HAND_CLASSES, iou_thresholds=[0.5, 0.75])
    # person at 0.5 is the curve above; at 0.75 it is TP, FP, FP, FP: precision 1 up to recall
    # 1/3, so the 34 samples 0.00..0.33 read 1.
    np.testing.assert_allclose(report.ap, [[AP_COCO101, 1.0, np.nan], [34 / 101, 1.0, np.nan]])
    assert report.map50 == pytest.approx((AP_COCO101 + 1) / 2)
    assert report.map50_95 == pytest.approx((AP_COCO101 + 34 / 101 + 2) / 4)
    np.testing.assert_array_equal(report.n_gt, [3, 1, 0])
    np.testing.assert_array_equal(report.n_pred, [4, 1, 1])

    voc = evaluate_detections(predictions, truths, HAND_CLASSES, [0.5], ap_method="all_points")
    assert voc.ap[0, 0] == pytest.approx(AP_ALL_POINTS)

    assert set(report.pr_curves) == {"person", "sign"}  # no curve without ground truth
    np.testing.assert_allclose(report.pr_curves["person"]["recall"], RECALL)
    np.testing.assert_allclose(report.pr_curves["person"]["precision"], PRECISION)
    np.testing.assert_allclose(report.pr_curves["person"]["scores"], [0.9, 0.8, 0.7, 0.6])

    table = report.table()
    assert list(table.index) == [*HAND_CLASSES, "all"]
    assert list(table.columns) == ["ap50", "ap50_95", "n_gt", "n_pred"]
    assert table.loc["all", "n_gt"] == 4 and table.loc["all", "n_pred"] == 6
    assert table.loc["all", "ap50"] == pytest.approx(report.map50)
    assert np.isnan(report.per_class["forklift"]["ap50"])
    assert report.per_class["sign"] == {"ap50": 1.0, "ap50_95": 1.0, "n_gt": 1, "n_pred": 1}

    reference = coco_reference(predictions, truths, HAND_CLASSES, [(120, 120)])
    ours = evaluate_detections(predictions, truths, HAND_CLASSES)
    assert ours.map50 == pytest.approx(reference["map50"], abs=1e-12)
    assert ours.map50_95 == pytest.approx(reference["map50_95"], abs=1e-12)
    assert np.isnan(reference["per_class_ap50_95"]["forklift"])


def test_a_detection_takes_the_ground_truth_it_overlaps_most():
    truths = [{"boxes": [[0, 0, 10, 10], [5, 0, 15, 10]], "labels": [0, 0]}]
    # The first detection overlaps the first truth at 0.43 and the second at 0.82. Taking the
    # first truth (the first one above 0.4) would leave the second detection (IoU 0.33 with the
    # second truth) unmatched; the best match leaves both detections true positives.
    predictions = [{"boxes": [[4, 0, 14, 10], [0, 0, 10, 10]], "scores": [0.9, 0.8],
                    "labels": [0, 0]}]
    report = evaluate_detections(predictions, truths, ["person"], iou_thresholds=[0.4])
    assert report.ap[0, 0] == 1.0


def test_edge_cases_of_matching_follow_pycocotools():
    # IoU exactly at the threshold is a match: [0, 0, 10, 5] covers half of [0, 0, 10, 10].
    truths = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    predictions = [{"boxes": [[0, 0, 10, 5]], "scores": [0.9], "labels": [0]}]
    report = evaluate_detections(predictions, truths, ["person"])
    np.testing.assert_array_equal(report.ap[:, 0], [1.0] + [0.0] * 9)
    reference = coco_reference(predictions, truths, ["person"], [(20, 20)])
    assert report.map50_95 == pytest.approx(0.1) and reference["map50_95"] == pytest.approx(0.1)

    # The first detection overlaps both truths at exactly 8/12; pycocotools gives it the later
    # one, which leaves the first truth to the second detection (whose IoU with the later truth,
    # 6/14, is below 0.5). Giving it the first truth would make the second a false positive.
    truths = [{"boxes": [[0, 0, 10, 10], [4, 0, 14, 10]], "labels": [0, 0]}]
    predictions = [{"boxes": [[2, 0, 12, 10], [0, 0, 10, 10]], "scores": [0.9, 0.8],
                    "labels": [0, 0]}]
    report = evaluate_detections(predictions, truths, ["person"])
    assert report.map50 == 1.0
    reference = coco_reference(predictions, truths, ["person"], [(20, 20)])
    assert report.map50_95 == pytest.approx(reference["map50_95"], abs=1e-12)


def test_precision_recall_at_operating_points():
    predictions, truths = hand_scene()
    frame = precision_recall_at(predictions, truths, HAND_CLASSES, confidence=0.45)
    assert frame.loc["person", ["tp", "fp", "fn"]].tolist() == [2, 2, 1]
    assert frame.loc["sign", ["tp", "fp", "fn"]].tolist() == [1, 0, 0]
    assert frame.loc["forklift", ["tp", "fp", "fn"]].tolist() == [0, 0, 0]  # 0.3 is below
    # all: tp 3, fp 2, fn 1 -> precision 3/5, recall 3/4, F1 6 / (6 + 2 + 1)
    np.testing.assert_allclose(frame.loc["all", ["precision", "recall", "f1"]].to_numpy(float),
                               [3 / 5, 3 / 4, 2 / 3])

    strict = precision_recall_at(predictions, truths, HAND_CLASSES, confidence=0.85)
    np.testing.assert_allclose(strict.loc["person", ["precision", "recall", "f1"]].to_numpy(float),
                               [1.0, 1 / 3, 0.5])
    nothing = precision_recall_at(predictions, truths, HAND_CLASSES, confidence=0.95)
    assert nothing.loc["all", ["precision", "recall", "f1"]].tolist() == [0.0, 0.0, 0.0]


def test_labels_must_be_known_classes():
    predictions, truths = hand_scene()
    truths[0]["labels"] = ["person", "person", "person", "ladder"]
    with pytest.raises(ValueError, match="ladder"):
        evaluate_detections(predictions, truths, HAND_CLASSES)
    with pytest.raises(ValueError):
        evaluate_detections(predictions, [], HAND_CLASSES)
    predictions, truths = hand_scene()
    predictions[0]["boxes"][1] = [0, 0, 10, -9]  # x, y, w, h passed as x1, y1, x2, y2
    with pytest.raises(ValueError, match="x2 >= x1"):
        evaluate_detections(predictions, truths, HAND_CLASSES)


def test_detection_cap_is_per_image_and_class_as_in_coco():
    # One image: 150 confident person false positives, then the true person at score 0.1; one
    # true sign at score 0.05. With 100 detections per image and class the person TP is cut
    # (AP 0) but the sign is not (AP 1). A cap over all classes would cut the sign as well.
    fp_boxes = np.tile([[300.0, 300, 310, 310]], (150, 1))
    predictions = [{"boxes": np.vstack([fp_boxes, [[0, 0, 10, 10], [200, 200, 220, 220]]]),
                    "scores": np.concatenate([np.linspace(0.9, 0.5, 150), [0.1, 0.05]]),
                    "labels": [0] * 151 + [5]}]
    truths = [{"boxes": [[0, 0, 10, 10], [200, 200, 220, 220]], "labels": [0, 5]}]
    report = evaluate_detections(predictions, truths, CLASSES)
    assert report.per_class["person"]["ap50"] == 0.0
    assert report.per_class["sign"]["ap50"] == 1.0
    assert report.map50 == 0.5
    reference = coco_reference(predictions, truths, CLASSES, [(480, 640)])
    assert reference["map50"] == pytest.approx(0.5, abs=1e-12)
    # Without the cap the person is found last: recall 1 at precision 1/151 everywhere.
    uncapped = evaluate_detections(predictions, truths, CLASSES, max_detections=200)
    assert uncapped.per_class["person"]["ap50"] == pytest.approx(1 / 151)


# --- SafetyScenes against pycocotools ------------------------------------------------------------

@pytest.fixture(scope="module")
def safetyscenes_val():
    """Ground truth per image from the COCO export (xywh -> xyxy, category id 1.. -> label 0..)."""
    coco = json.loads((repo_root() / "data/safetyscenes/coco/val.json").read_text())
    assert [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])] == CLASSES
    images = sorted(coco["images"], key=lambda image: image["id"])
    truths = {image["id"]: {"boxes": [], "labels": []} for image in images}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        truths[ann["image_id"]]["boxes"].append([x, y, x + w, y + h])
        truths[ann["image_id"]]["labels"].append(ann["category_id"] - 1)
    ground_truths = [{"boxes": np.array(t["boxes"]).reshape(-1, 4), "labels": np.array(t["labels"])}
                     for t in truths.values()]
    return ground_truths, [(image["height"], image["width"]) for image in images]


def synthetic_predictions(ground_truths, seed):
    """A plausible detector's output: jittered boxes (worse ones scored lower), missed objects,
    duplicates, wrong classes and background false positives; scores rounded so ties occur."""
    rng = np.random.default_rng(seed)
    predictions = []
    for truth in ground_truths:
        boxes, labels = truth["boxes"], truth["labels"].copy()
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        error = rng.uniform(0.0, 0.15, (len(boxes), 1))
        jittered = boxes + rng.normal(0, 1, boxes.shape) * error * size
        scores = np.clip(1 - 3 * error[:, 0] + rng.normal(0, 0.15, len(boxes)), 0.01, 1)
        confused = rng.random(len(boxes)) < 0.05
        labels[confused] = rng.integers(0, len(CLASSES), confused.sum())
        found = rng.random(len(boxes)) > 0.15
        twice = found & (rng.random(len(boxes)) < 0.1)
        n_background = rng.integers(0, 4)
        background = random_boxes(rng, n_background, size=400.0)
        duplicates = jittered[twice] + rng.normal(0, 3, (twice.sum(), 4))
        pred_boxes = np.vstack([jittered[found], duplicates, background])
        pred_boxes[:, 2:] = np.maximum(pred_boxes[:, 2:], pred_boxes[:, :2] + 1)  # keep x2 > x1
        predictions.append({
            "boxes": pred_boxes,
            "scores": np.round(np.concatenate([scores[found], scores[twice] * 0.6,
                                               rng.uniform(0.01, 0.7, n_background)]), 2),
            "labels": np.concatenate([labels[found], labels[twice],
                                      rng.integers(0, len(CLASSES), n_background)]),
        })
    return predictions


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_pycocotools_on_safetyscenes(safetyscenes_val, seed):
    ground_truths, sizes = safetyscenes_val
    predictions = synthetic_predictions(ground_truths, seed)
    ours = evaluate_detections(predictions, ground_truths, CLASSES)
    reference = coco_reference(predictions, ground_truths, CLASSES, sizes)
    assert 0.3 < ours.map50_95 < ours.map50 < 0.95  # a realistic, imperfect detector
    assert abs(ours.map50 - reference["map50"]) < 1e-9
    assert abs(ours.map50_95 - reference["map50_95"]) < 1e-9
    for name in CLASSES:
        assert ours.per_class[name]["ap50_95"] == pytest.approx(
            reference["per_class_ap50_95"][name], abs=1e-9)


def test_perfect_and_empty_predictions(safetyscenes_val):
    ground_truths, sizes = safetyscenes_val
    perfect = [{**truth, "scores": np.ones(len(truth["labels"]))} for truth in ground_truths]
    report = evaluate_detections(perfect, ground_truths, CLASSES)
    assert report.map50 == 1.0 and report.map50_95 == 1.0
    assert (report.ap == 1.0).all()
    reference = coco_reference(perfect, ground_truths, CLASSES, sizes)
    assert reference["map50"] == pytest.approx(1.0) and reference["map50_95"] == pytest.approx(1.0)

    empty = [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []} for _ in ground_truths]
    report = evaluate_detections(empty, ground_truths, CLASSES)
    assert report.map50 == 0.0 and report.map50_95 == 0.0
    assert report.n_pred.sum() == 0 and report.n_gt.sum() == 536
    reference = coco_reference(empty, ground_truths, CLASSES, sizes)
    assert reference["map50"] == 0.0 and reference["map50_95"] == 0.0


def test_module_docstring_example_runs():
    failures, attempted = doctest.testmod(metrics)
    assert attempted > 0 and failures == 0
