"""The association step of a tracking-by-detection tracker, written out: the IoU cost between
predicted track boxes and a frame's detections, Hungarian matching with a gate, a constant-velocity
Kalman filter on the box, and ByteTrack's two-stage association (Zhang et al., 2022) assembled into
the book's own minimal tracker, :class:`MiniByteTrack`.

Taught in ``notebooks/video/03_association.ipynb``, where MiniByteTrack runs on the cached detections
next to the ``trackers`` package's ByteTrack (:mod:`.track`) and both are scored with :mod:`.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .metrics import iou_matrix


def iou_cost(track_boxes, det_boxes) -> np.ndarray:
    """1 - IoU between every predicted track box (rows) and every detection (columns), xyxy."""
    return 1.0 - iou_matrix(track_boxes, det_boxes)


def match(iou: np.ndarray, min_iou: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching on ``1 - iou``, then the gate: a pair with IoU below ``min_iou`` is no match.

    Gating after the assignment (not before) is what SORT and ByteTrack do: the solver sees every
    pair, and a pair it chose that overlaps too little is dropped rather than forced.
    Returns ``(pairs, unmatched_rows, unmatched_cols)``."""
    iou = np.asarray(iou, float)
    pairs = []
    if iou.size:
        rows, cols = linear_sum_assignment(1.0 - iou)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    matched_r, matched_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(iou.shape[0]) if r not in matched_r],
            [c for c in range(iou.shape[1]) if c not in matched_c])


def xyxy_to_cxcywh(box) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, float)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def cxcywh_to_xyxy(z) -> np.ndarray:
    cx, cy, w, h = np.asarray(z, float)[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class KalmanBox:
    """Constant-velocity Kalman filter on a box: state ``(cx, cy, w, h)`` and their velocities per frame.

    The noise scales with the box's height, as in ByteTrack and DeepSORT: a near (tall) worker's
    box jitters by more pixels than a far one's. ``pos_std`` and ``vel_std`` are those scales."""

    def __init__(self, box_xyxy, velocity=(0.0, 0.0, 0.0, 0.0), pos_std: float = 1 / 20, vel_std: float = 1 / 160):
        self.pos_std, self.vel_std = pos_std, vel_std
        self.x = np.r_[xyxy_to_cxcywh(box_xyxy), np.asarray(velocity, float)]
        h = self.x[3]
        # unsure of the velocity at birth: ten times the per-frame velocity noise
        self.P = np.diag(np.r_[[2 * pos_std * h] * 4, [10 * vel_std * h] * 4] ** 2)
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)  # position += velocity, one frame
        self.H = np.eye(4, 8)  # a detection measures the box, not its velocity

    def _noise(self, scale: float, n: int = 4) -> np.ndarray:
        return np.diag(np.full(n, (scale * self.x[3]) ** 2))

    def predict(self) -> np.ndarray:
        """One frame ahead: the mean moves by its velocity; the covariance grows by the process noise."""
        self.x = self.F @ self.x
        Q = np.diag(np.r_[np.diag(self._noise(self.pos_std)), np.diag(self._noise(self.vel_std))])
        self.P = self.F @ self.P @ self.F.T + Q
        return self.box()

    def update(self, box_xyxy) -> np.ndarray:
        """Blend the prediction with a detection by their uncertainties (the Kalman gain)."""
        z = xyxy_to_cxcywh(box_xyxy)
        S = self.H @ self.P @ self.H.T + self._noise(self.pos_std)  # innovation covariance
        K = self.P @ self.H.T @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.H @ self.x)
        self.P = (np.eye(8) - K @ self.H) @ self.P
        return self.box()

    def box(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.x)


@dataclass
class _Track:
    kf: KalmanBox
    hits: int = 1  # consecutive frames with a match
    since_update: int = 0
    id: int = -1  # -1 until confirmed


class MiniByteTrack:
    """ByteTrack in one class: Kalman prediction, IoU cost, Hungarian matching, two stages.

    Per frame: predict every track; **stage 1** matches the confident detections (score >= ``high``)
    to all confirmed tracks, lost ones included (gate ``first_iou``); **stage 2** matches the
    tracks still unmatched *that were seen last frame* to the low-score detections (``low`` <= score
    < ``high``) with a stricter gate ``second_iou``: a half-hidden worker scores low but is still
    there, and the strict gate keeps background clutter from feeding a track; **stage 3** gives
    tentative tracks (born last frame) a chance on the confident leftovers, removing those that miss.
    *Birth*: a confident leftover with score >= ``activation`` starts a tentative track, confirmed
    (given an id) after ``min_hits`` consecutive matches. *Death*: a track unmatched for more than
    ``max_lost`` frames is dropped. ``second_stage=False`` turns ByteTrack into SORT-like matching.
    ``keep_log=True`` records each association in :attr:`log` (frame, stage, the tracks' ids and
    predicted boxes, the detections' indices, the IoU matrix and the pairs kept) for the notebook.
    """

    def __init__(self, high: float = 0.5, low: float = 0.1, activation: float = 0.5, first_iou: float = 0.2,
                 second_iou: float = 0.5, tentative_iou: float = 0.3, min_hits: int = 2, max_lost: int = 15,
                 second_stage: bool = True, keep_log: bool = False):
        self.high, self.low, self.activation = high, low, activation
        self.first_iou, self.second_iou, self.tentative_iou = first_iou, second_iou, tentative_iou
        self.min_hits, self.max_lost, self.second_stage = min_hits, max_lost, second_stage
        self.tracks: list[_Track] = []
        self.next_id, self.frame = 1, 0
        self.log: list[dict] | None = [] if keep_log else None

    def _associate(self, tracks: list[_Track], boxes: np.ndarray, min_iou: float, stage: int = 0, det_index=()):
        if not tracks or not len(boxes):
            return [], list(range(len(tracks))), list(range(len(boxes)))
        predicted = np.array([t.kf.box() for t in tracks])
        iou = iou_matrix(predicted, boxes)
        pairs, free_t, free_d = match(iou, min_iou)
        if self.log is not None:
            self.log.append({"frame": self.frame, "stage": stage, "track_ids": [t.id for t in tracks],
                             "predicted": predicted, "det_index": np.asarray(det_index), "iou": iou, "pairs": pairs})
        return pairs, free_t, free_d

    def update(self, boxes, scores) -> list[tuple[int, np.ndarray, float]]:
        """One frame's detections (xyxy, scores) -> ``[(track id, detection box, score)]`` of the
        confirmed tracks matched in this frame."""
        self.frame += 1
        boxes, scores = np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
        for t in self.tracks:
            t.kf.predict()
        hi, lo = np.flatnonzero(scores >= self.high), np.flatnonzero((scores >= self.low) & (scores < self.high))
        confirmed = [t for t in self.tracks if t.id > 0]
        tentative = [t for t in self.tracks if t.id < 0]
        matched: list[tuple[_Track, int]] = []

        pairs, free_t, free_hi = self._associate(confirmed, boxes[hi], self.first_iou, 1, hi)  # stage 1
        matched += [(confirmed[r], hi[c]) for r, c in pairs]
        left = [confirmed[r] for r in free_t]
        if self.second_stage:  # stage 2: the low-score boxes, only for tracks seen last frame
            recent = [t for t in left if t.since_update == 0]
            pairs, _, _ = self._associate(recent, boxes[lo], self.second_iou, 2, lo)
            matched += [(recent[r], lo[c]) for r, c in pairs]
        hi = hi[free_hi]
        pairs, free_tent, free_hi = self._associate(tentative, boxes[hi], self.tentative_iou, 3, hi)  # stage 3
        matched += [(tentative[r], hi[c]) for r, c in pairs]
        dead = {id(tentative[r]) for r in free_tent}

        out, hit = [], set()
        for t, j in matched:
            t.kf.update(boxes[j])
            t.hits, t.since_update = t.hits + 1, 0
            hit.add(id(t))
            if t.id < 0 and t.hits >= self.min_hits:
                t.id, self.next_id = self.next_id, self.next_id + 1
            if t.id > 0:
                out.append((t.id, boxes[j], float(scores[j])))
        for t in self.tracks:
            if id(t) not in hit:
                t.hits, t.since_update = 0, t.since_update + 1
        self.tracks = [t for t in self.tracks if id(t) not in dead and t.since_update <= self.max_lost]
        for j in hi[free_hi]:  # birth
            if scores[j] >= self.activation:
                t = _Track(KalmanBox(boxes[j]))
                if self.frame == 1 or self.min_hits <= 1:  # nothing to confirm against on the first frame
                    t.id, self.next_id = self.next_id, self.next_id + 1
                    out.append((t.id, boxes[j], float(scores[j])))
                self.tracks.append(t)
        return out


def run(det_rows: np.ndarray, n_frames: int, class_id: int = 1, tracker: MiniByteTrack | None = None,
        **kwargs) -> np.ndarray:
    """MiniByteTrack over MOT detection rows of one class, like :func:`.track.track`: returns MOT rows
    ``frame,id,x,y,w,h,conf,class,-1`` of the boxes it gave an id."""
    tracker = tracker or MiniByteTrack(**kwargs)
    dets = det_rows[det_rows[:, 7] == class_id]
    out = []
    for f in range(1, n_frames + 1):
        d = dets[dets[:, 0] == f]
        xyxy = np.c_[d[:, 2], d[:, 3], d[:, 2] + d[:, 4], d[:, 3] + d[:, 5]]
        for tid, (x1, y1, x2, y2), conf in tracker.update(xyxy, d[:, 6]):
            out.append((f, tid, x1, y1, x2 - x1, y2 - y1, conf, class_id, -1))
    return np.array(out, float).reshape(-1, 9)
