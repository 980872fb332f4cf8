"""The association step written out (efsora_helpers.video.association): Hungarian matching is the
optimum brute force finds, the Kalman filter's constant-velocity prediction is exact, and
MiniByteTrack tracks the ground truth perfectly and depends on its second stage on real detections."""

import itertools

import numpy as np
import pytest

from efsora_helpers.video import association as A
from efsora_helpers.video import frames as F
from efsora_helpers.video import metrics as M
from efsora_helpers.video.detect import detections_root, read_detections


def _brute_force(iou: np.ndarray) -> float:
    """The largest total IoU over every one-to-one assignment of the smaller side."""
    n, m = iou.shape
    if n <= m:
        return max(sum(iou[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return _brute_force(iou.T)


@pytest.mark.parametrize("shape", [(3, 3), (3, 5), (5, 2), (4, 4)])
def test_hungarian_equals_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        iou = rng.random(shape)
        pairs, free_r, free_c = A.match(iou, min_iou=0.0)
        assert sum(iou[r, c] for r, c in pairs) == pytest.approx(_brute_force(iou))
        assert len(pairs) == min(shape) and len(free_r) == shape[0] - len(pairs) and len(free_c) == shape[1] - len(pairs)


def test_hand_made_cost_where_greedy_is_wrong():
    # greedy takes the 0.9 and is left with 0.1; the optimum is 0.8 + 0.8
    iou = np.array([[0.9, 0.8], [0.8, 0.1]])
    pairs, _, _ = A.match(iou, min_iou=0.0)
    assert sorted(pairs) == [(0, 1), (1, 0)]


def test_gate_drops_weak_pairs():
    iou = np.array([[0.9, 0.0], [0.0, 0.15]])
    pairs, free_r, free_c = A.match(iou, min_iou=0.2)
    assert pairs == [(0, 0)] and free_r == [1] and free_c == [1]
    assert A.match(np.zeros((0, 3)), 0.2) == ([], [], [0, 1, 2])


def test_iou_cost_is_one_minus_iou():
    a, b = np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(A.iou_cost(a, b), [[0.0, 1 - 50 / 150, 1.0]])


def test_kalman_predict_of_a_constant_velocity_box_is_exact():
    box, v = np.array([100.0, 50.0, 140.0, 150.0]), np.array([3.0, -1.0, 0.5, 0.0])
    kf = A.KalmanBox(box, velocity=v)
    var0 = kf.P[0, 0]
    for n in range(1, 11):
        predicted = kf.predict()
        z = A.xyxy_to_cxcywh(box) + n * v
        np.testing.assert_allclose(predicted, A.cxcywh_to_xyxy(z), atol=1e-9)
    assert kf.P[0, 0] > var0  # prediction alone only adds uncertainty
    before = kf.P[0, 0]
    kf.update(predicted)  # a measurement where the filter expected it: same mean, less uncertainty
    np.testing.assert_allclose(kf.box(), predicted, atol=1e-9)
    assert kf.P[0, 0] < before


def test_kalman_learns_the_velocity_from_measurements():
    kf = A.KalmanBox([0, 0, 20, 60])
    for n in range(1, 30):
        kf.predict()
        kf.update([2 * n, 0, 2 * n + 20, 60])
    assert kf.x[4] == pytest.approx(2.0, abs=0.05)


def _truth(name):
    rows = F.mot_rows(name)
    return rows[rows[:, 7] == 1]


def _segments(rows: np.ndarray) -> np.ndarray:
    """The truth with each unbroken run of a worker's frames under its own id: a worker fully hidden
    for a while comes back as a new segment."""
    out = rows[np.lexsort((rows[:, 0], rows[:, 1]))].copy()
    new = np.r_[True, (np.diff(out[:, 1]) != 0) | (np.diff(out[:, 0]) != 1)]
    out[:, 1] = np.cumsum(new)
    return out


@pytest.mark.parametrize("name", ["busy_aisle", "forklift_hides", "vest_off_near_miss"])
def test_minibytetrack_on_ground_truth_boxes_is_near_perfect(name):
    gt_rows = _truth(name)
    dets = gt_rows.copy()
    dets[:, 6] = 0.9  # every true box, confident
    hyp = M.by_frame(A.run(dets, F.meta(name)["frames"]))
    s = M.clear_mot(M.by_frame(gt_rows), hyp)
    # misses: the first frame of each track (confirmed on its second hit); no false alarm
    assert s["mota"] > 0.99 and s["num_false_positives"] == 0, s
    # no identity is ever lost while a worker stays in view; the few switches are at reappearances
    # after the worker was wholly hidden, where the IoU gate cannot bridge the gap
    seg = _segments(gt_rows)
    assert M.clear_mot(M.by_frame(seg), hyp)["num_switches"] == 0
    assert s["num_switches"] <= len(set(seg[:, 1])) - len(set(gt_rows[:, 1]))


def test_minibytetrack_returns_mot_rows_and_first_frame_ids():
    tracker = A.MiniByteTrack()
    out = tracker.update([[0, 0, 10, 30], [50, 0, 60, 30]], [0.9, 0.8])
    assert [tid for tid, _, _ in out] == [1, 2]
    out = tracker.update([[1, 0, 11, 30], [51, 0, 61, 30], [200, 0, 210, 30]], [0.9, 0.3, 0.95])
    assert sorted(tid for tid, _, _ in out) == [1, 2]  # the low-score box kept track 2; the new one is tentative
    out = tracker.update([[2, 0, 12, 30], [202, 0, 212, 30]], [0.9, 0.95])
    assert sorted(tid for tid, _, _ in out) == [1, 3]


@pytest.mark.skipif(not (detections_root() / "busy_aisle_det.txt").exists(), reason="no cached detections")
def test_second_stage_changes_the_result_on_a_clip():
    name = "busy_aisle"
    gt, det, n = M.by_frame(_truth(name)), read_detections(name), F.meta(name)["frames"]
    both = M.clear_mot(gt, M.by_frame(A.run(det, n)))
    first = M.clear_mot(gt, M.by_frame(A.run(det, n, second_stage=False)))
    assert both["num_misses"] < first["num_misses"] and both["mota"] > first["mota"]
