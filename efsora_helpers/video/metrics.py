"""Multi-object tracking metrics from their definitions: CLEAR MOT (MOTA, MOTP, ID switches) and the
identity metrics (IDF1, IDP, IDR), checked against ``motmetrics`` in ``tests/test_video_metrics.py``
as chapter 1 checks mAP against pycocotools. For the tracking notebook of chapter 5
(``notebooks/video/``), and HOTA (:func:`hota`), checked against TrackEval.

Input: per frame, the ground-truth and the tracker's ``(id, x1, y1, x2, y2)`` rows
(:func:`by_frame` builds them from MOTChallenge rows). A ground-truth box and a hypothesis *match*
in a frame when their IoU is at least ``min_iou`` (0.5, MOTChallenge's threshold).

* **CLEAR MOT** (Bernardin and Stiefelhagen, 2008). Frame by frame: each object's last
  correspondence is kept while its boxes still match (also after frames in which the object was
  missed: motmetrics' reading, which the first version here got wrong by looking only at the
  previous frame, two switches off on a real ByteTrack run); the remaining objects are paired by the
  Hungarian algorithm on the cost 1 - IoU (as many pairs as possible, then the smallest total
  cost). A ground-truth object matched to a different track id than the last time it was matched
  is an *ID switch*. Unmatched ground truth: misses (FN); unmatched hypotheses: false positives.
  ``MOTA = 1 - (FN + FP + IDSW) / GT``; MOTP here is motmetrics' convention, the mean 1 - IoU of
  the matches (lower is better).
* **Identity metrics** (Ristani et al., 2016). One global one-to-one assignment between
  ground-truth trajectories and track ids that maximises the number of frames in which the paired
  boxes match (IDTP). ``IDF1 = 2 IDTP / (GT detections + tracker detections)``; IDP and IDR are
  IDTP over the tracker's and the ground truth's detections. MOTA counts a switch once; IDF1 pays
  for every frame spent under the wrong id.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment

Rows = dict[int, list[tuple[int, float, float, float, float]]]
_INVALID = 1e6


def by_frame(mot: np.ndarray) -> Rows:
    """MOTChallenge rows (frame, id, x, y, w, h, ...) -> {frame: [(id, x1, y1, x2, y2)]}."""
    out: Rows = defaultdict(list)
    for r in np.asarray(mot):
        out[int(r[0])].append((int(r[1]), float(r[2]), float(r[3]), float(r[2] + r[4]), float(r[3] + r[5])))
    return dict(out)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4 xyxy) with every box in ``b`` (m, 4)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def clear_mot(gt: Rows, hyp: Rows, min_iou: float = 0.5) -> dict:
    """MOTA, MOTP and their counts (see the module docstring)."""
    last_match: dict[int, int] = {}  # gt id -> the hypothesis id it was last matched to
    n_gt = fn = fp = idsw = 0
    cost_sum, n_match = 0.0, 0
    for f in sorted(set(gt) | set(hyp)):
        g_rows, h_rows = gt.get(f, []), hyp.get(f, [])
        g_ids, h_ids = [r[0] for r in g_rows], [r[0] for r in h_rows]
        n_gt += len(g_rows)
        iou = iou_matrix([r[1:] for r in g_rows], [r[1:] for r in h_rows]) if g_rows and h_rows else np.zeros((len(g_rows), len(h_rows)))
        valid = iou >= min_iou
        matches: dict[int, int] = {}  # gt index -> hyp index
        for gi, g in enumerate(g_ids):  # keep each object's last correspondence while it still holds
            h = last_match.get(g)
            if h is not None and h in h_ids:
                hi = h_ids.index(h)
                if valid[gi, hi] and hi not in matches.values():
                    matches[gi] = hi
        free_g = [i for i in range(len(g_ids)) if i not in matches]
        free_h = [j for j in range(len(h_ids)) if j not in matches.values()]
        if free_g and free_h:
            sub = np.where(valid[np.ix_(free_g, free_h)], 1 - iou[np.ix_(free_g, free_h)], _INVALID)
            rows, cols = linear_sum_assignment(sub)
            for r, c in zip(rows, cols):
                if sub[r, c] < _INVALID:
                    gi, hi = free_g[r], free_h[c]
                    matches[gi] = hi
                    if g_ids[gi] in last_match and last_match[g_ids[gi]] != h_ids[hi]:
                        idsw += 1
        for gi, hi in matches.items():
            last_match[g_ids[gi]] = h_ids[hi]
            cost_sum += 1 - iou[gi, hi]
        n_match += len(matches)
        fn += len(g_ids) - len(matches)
        fp += len(h_ids) - len(matches)
    return {"mota": 1 - (fn + fp + idsw) / n_gt if n_gt else float("nan"),
            "motp": cost_sum / n_match if n_match else float("nan"),
            "num_objects": n_gt, "num_matches": n_match, "num_misses": fn, "num_false_positives": fp,
            "num_switches": idsw}


def identity(gt: Rows, hyp: Rows, min_iou: float = 0.5) -> dict:
    """IDF1, IDP, IDR and IDTP (see the module docstring)."""
    g_ids = sorted({r[0] for rows in gt.values() for r in rows})
    h_ids = sorted({r[0] for rows in hyp.values() for r in rows})
    gi_of, hi_of = {g: i for i, g in enumerate(g_ids)}, {h: j for j, h in enumerate(h_ids)}
    together = np.zeros((len(g_ids), len(h_ids)))  # frames in which the pair's boxes match
    for f in set(gt) & set(hyp):
        g_rows, h_rows = gt[f], hyp[f]
        iou = iou_matrix([r[1:] for r in g_rows], [r[1:] for r in h_rows])
        for a, b in zip(*np.nonzero(iou >= min_iou)):
            together[gi_of[g_rows[a][0]], hi_of[h_rows[b][0]]] += 1
    n_gt = sum(len(r) for r in gt.values())
    n_hyp = sum(len(r) for r in hyp.values())
    idtp, pairs = 0.0, {}
    if together.size:
        rows, cols = linear_sum_assignment(-together)
        idtp = float(together[rows, cols].sum())
        pairs = {h_ids[c]: g_ids[r] for r, c in zip(rows, cols) if together[r, c] > 0}
    return {"pairs": pairs,  # track id -> the ground-truth id it stands for
            "idf1": 2 * idtp / (n_gt + n_hyp) if n_gt + n_hyp else float("nan"),
            "idp": idtp / n_hyp if n_hyp else float("nan"), "idr": idtp / n_gt if n_gt else float("nan"),
            "idtp": idtp, "idfp": n_hyp - idtp, "idfn": n_gt - idtp}


#: HOTA's localisation thresholds: 0.05, 0.10, ..., 0.95.
ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps


def hota(gt: Rows, hyp: Rows) -> dict:
    """HOTA (Luiten et al., 2021): at each IoU threshold alpha, DetA = TP / (TP + FN + FP) and
    AssA = the mean, over true-positive matches c, of TPA(c) / (TPA(c) + FNA(c) + FPA(c)), where
    TPA counts the frames in which c's ground-truth id and track id are matched, FNA the other
    frames of that ground-truth id and FPA the other frames of that track id; HOTA(alpha) =
    sqrt(DetA * AssA), and HOTA is its mean over :data:`ALPHAS`.

    Matching per frame maximises IoU weighted by how well the two ids align over the whole video
    (their soft overlap count over the union of their frames), so a frame is matched to the track
    that follows the object, not only to the box that happens to fit best, as in the paper."""
    g_ids = sorted({r[0] for rows in gt.values() for r in rows})
    h_ids = sorted({r[0] for rows in hyp.values() for r in rows})
    gi_of, hi_of = {g: i for i, g in enumerate(g_ids)}, {h: j for j, h in enumerate(h_ids)}
    frames = sorted(set(gt) | set(hyp))
    per_frame = []
    overlap = np.zeros((len(g_ids), len(h_ids)))
    g_count, h_count = np.zeros(len(g_ids)), np.zeros(len(h_ids))
    for f in frames:
        g_rows, h_rows = gt.get(f, []), hyp.get(f, [])
        gi = np.array([gi_of[r[0]] for r in g_rows], int)
        hi = np.array([hi_of[r[0]] for r in h_rows], int)
        sim = iou_matrix([r[1:] for r in g_rows], [r[1:] for r in h_rows]) if len(gi) and len(hi) \
            else np.zeros((len(gi), len(hi)))
        per_frame.append((gi, hi, sim))
        if len(gi) and len(hi):  # each IoU shared out among the competing boxes of both sides
            denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
            soft = np.where(denom > _EPS, sim / np.where(denom > _EPS, denom, 1), 0.0)
            overlap[np.ix_(gi, hi)] += soft
        g_count[gi] += 1
        h_count[hi] += 1
    union = g_count[:, None] + h_count[None, :] - overlap
    alignment = np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)

    n = len(ALPHAS)
    tp, fn, fp, loc = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    together = np.zeros((n, len(g_ids), len(h_ids)))
    for gi, hi, sim in per_frame:
        if not len(gi) or not len(hi):
            fn += len(gi)
            fp += len(hi)
            continue
        rows, cols = linear_sum_assignment(-(alignment[np.ix_(gi, hi)] * sim))
        for a, alpha in enumerate(ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            r, c = rows[ok], cols[ok]
            tp[a] += len(r)
            fn[a] += len(gi) - len(r)
            fp[a] += len(hi) - len(r)
            loc[a] += sim[r, c].sum()
            np.add.at(together[a], (gi[r], hi[c]), 1)
    ass_a = np.zeros(n)
    for a in range(n):
        m = together[a]
        per_pair = m / np.maximum(1, g_count[:, None] + h_count[None, :] - m)  # TPA / (TPA + FNA + FPA)
        ass_a[a] = (m * per_pair).sum() / max(1.0, tp[a])  # averaged over true positives
    det_a = tp / np.maximum(1, tp + fn + fp)
    per_alpha = np.sqrt(det_a * ass_a)
    return {"hota": float(per_alpha.mean()), "deta": float(det_a.mean()), "assa": float(ass_a.mean()),
            "loca": float((np.maximum(1e-10, loc) / np.maximum(1e-10, tp)).mean()),
            "hota_per_alpha": per_alpha, "deta_per_alpha": det_a, "assa_per_alpha": ass_a}
