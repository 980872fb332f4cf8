"""MOTA and IDF1 computed by the book from their definitions equal motmetrics' on perturbed ground
truth of the shipped clips (misses, jitter, false positives, ID switches and fragmented tracks)."""

import numpy as np
import pytest

from efsora_helpers.video import frames as F
from efsora_helpers.video import metrics as M

mm = pytest.importorskip("motmetrics")


def _perturb(mot: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = mot[rng.random(len(mot)) > 0.1].copy()  # 10% misses
    rows[:, 2:6] += rng.normal(0, 3, (len(rows), 4))  # jitter: some boxes fall under IoU 0.5
    rows[:, 4:6] = np.maximum(rows[:, 4:6], 2)
    ids = sorted(set(rows[:, 1].astype(int)))
    a, b = ids[0], ids[1]
    late = rows[:, 0] > rows[:, 0].max() / 2
    swap_a, swap_b = late & (rows[:, 1] == a), late & (rows[:, 1] == b)
    rows[swap_a, 1], rows[swap_b, 1] = b, a  # two tracks swap ids halfway
    rows[(rows[:, 1] == ids[-1]) & (rows[:, 0] > rows[:, 0].max() / 3), 1] = 99  # a track fragments
    n_fp = len(rows) // 50
    fp = np.zeros((n_fp, 9))
    fp[:, 0] = rng.integers(1, int(mot[:, 0].max()) + 1, n_fp)
    fp[:, 1] = 200 + np.arange(n_fp) % 7
    fp[:, 2], fp[:, 3] = rng.uniform(0, 560, n_fp), rng.uniform(0, 280, n_fp)
    fp[:, 4], fp[:, 5] = rng.uniform(20, 80, n_fp), rng.uniform(20, 80, n_fp)
    rows = np.concatenate([rows, fp])
    keep = np.unique(rows[:, :2], axis=0, return_index=True)[1]  # one box per (frame, id)
    return rows[np.sort(keep)]


def _distances(g, h) -> np.ndarray:
    """motmetrics' IoU distance (1 - IoU, NaN above 0.5), pair by pair. (motmetrics 1.4.0's own
    ``iou_matrix`` calls ``np.asfarray``, which NumPy 2 removed; the accumulator takes any matrix.)"""
    d = np.full((len(g), len(h)), np.nan)
    for i, (_, a1, b1, a2, b2) in enumerate(g):
        for j, (_, c1, d1, c2, d2) in enumerate(h):
            inter = max(0.0, min(a2, c2) - max(a1, c1)) * max(0.0, min(b2, d2) - max(b1, d1))
            iou = inter / ((a2 - a1) * (b2 - b1) + (c2 - c1) * (d2 - d1) - inter)
            if 1 - iou <= 0.5:
                d[i, j] = 1 - iou
    return d


def _motmetrics(gt: M.Rows, hyp: M.Rows) -> dict:
    acc = mm.MOTAccumulator(auto_id=False)
    for f in sorted(set(gt) | set(hyp)):
        g, h = gt.get(f, []), hyp.get(f, [])
        dist = _distances(g, h)
        acc.update([r[0] for r in g], [r[0] for r in h], dist, frameid=f)
    names = ["mota", "motp", "num_switches", "num_misses", "num_false_positives", "num_objects", "idf1", "idp", "idr"]
    return mm.metrics.create().compute(acc, metrics=names, name="x").iloc[0].to_dict()


@pytest.mark.parametrize("name,seed", [("busy_aisle", 0), ("forklift_near_miss", 1)])
def test_clear_mot_and_idf1_equal_motmetrics(name, seed):
    mot = F.mot_rows(name)
    gt, hyp = M.by_frame(mot), M.by_frame(_perturb(mot, seed))
    ours = M.clear_mot(gt, hyp) | M.identity(gt, hyp)
    ref = _motmetrics(gt, hyp)
    assert ours["num_switches"] >= 2 and ours["num_false_positives"] > 0
    for key in ("num_switches", "num_misses", "num_false_positives", "num_objects"):
        assert ours[key] == ref[key], key
    for key in ("mota", "motp", "idf1", "idp", "idr"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key


def test_perfect_tracking_scores_one_and_an_id_swap_costs_idf1_more_than_mota():
    mot = F.mot_rows("vest_on_in_lane")
    gt = M.by_frame(mot)
    assert M.clear_mot(gt, gt)["mota"] == 1.0 and M.identity(gt, gt)["idf1"] == 1.0
    swapped = mot.copy()
    ids = sorted(set(mot[:, 1].astype(int)))
    late = swapped[:, 0] > 150
    a, b = late & (swapped[:, 1] == ids[0]), late & (swapped[:, 1] == ids[1])
    swapped[a, 1], swapped[b, 1] = ids[1], ids[0]
    clear, ident = M.clear_mot(gt, M.by_frame(swapped)), M.identity(gt, M.by_frame(swapped))
    assert clear["num_switches"] == 2 and clear["num_misses"] == clear["num_false_positives"] == 0
    assert 1 - clear["mota"] < 1 - ident["idf1"]


def _trackeval_hota(gt: M.Rows, hyp: M.Rows) -> dict:
    from trackeval.metrics import HOTA

    frames = sorted(set(gt) | set(hyp))
    g_ids = sorted({r[0] for rows in gt.values() for r in rows})
    h_ids = sorted({r[0] for rows in hyp.values() for r in rows})
    data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [], "num_gt_ids": len(g_ids),
            "num_tracker_ids": len(h_ids), "num_gt_dets": sum(map(len, gt.values())),
            "num_tracker_dets": sum(map(len, hyp.values())), "num_timesteps": len(frames)}
    for f in frames:
        g, h = gt.get(f, []), hyp.get(f, [])
        data["gt_ids"].append(np.array([g_ids.index(r[0]) for r in g], int))
        data["tracker_ids"].append(np.array([h_ids.index(r[0]) for r in h], int))
        sim = 1 - np.nan_to_num(_distances(g, h), nan=1.0)  # IoU where >= 0.5 ...
        full = np.zeros((len(g), len(h)))
        for i, (_, a1, b1, a2, b2) in enumerate(g):  # ... and below it too: HOTA sweeps every threshold
            for j, (_, c1, d1, c2, d2) in enumerate(h):
                inter = max(0.0, min(a2, c2) - max(a1, c1)) * max(0.0, min(b2, d2) - max(b1, d1))
                full[i, j] = inter / ((a2 - a1) * (b2 - b1) + (c2 - c1) * (d2 - d1) - inter)
        assert np.allclose(sim[sim > 0], full[sim > 0])
        data["similarity_scores"].append(full)
    return HOTA().eval_sequence(data)


@pytest.mark.parametrize("name,seed", [("busy_aisle", 0), ("leave_and_return", 2)])
def test_hota_equals_trackeval(name, seed):
    pytest.importorskip("trackeval")
    mot = F.mot_rows(name)
    gt, hyp = M.by_frame(mot), M.by_frame(_perturb(mot, seed))
    ours, ref = M.hota(gt, hyp), _trackeval_hota(gt, hyp)
    np.testing.assert_allclose(ours["hota_per_alpha"], ref["HOTA"], atol=1e-9)
    np.testing.assert_allclose(ours["deta_per_alpha"], ref["DetA"], atol=1e-9)
    np.testing.assert_allclose(ours["assa_per_alpha"], ref["AssA"], atol=1e-9)
    assert 0.3 < ours["hota"] < 0.95
    assert M.hota(gt, gt)["hota"] == pytest.approx(1.0)
