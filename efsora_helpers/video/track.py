"""Trackers from the maintained ``trackers`` package (Roboflow; clean-room ByteTrack, SORT, OC-SORT,
BoT-SORT) run on cached detections, one class at a time, with MOTChallenge rows out.

For the tracking notebook of chapter 5 (``notebooks/video/``); scored with :mod:`.metrics`.
"""

from __future__ import annotations

import numpy as np

TRACKERS = ("bytetrack", "sort", "ocsort", "botsort")


def make_tracker(kind: str, fps: float = 15.0, **kwargs):
    import trackers

    cls = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker,
           "ocsort": trackers.OCSORTTracker, "botsort": trackers.BoTSORTTracker}[kind]
    if kind in ("bytetrack", "sort", "botsort"):
        kwargs.setdefault("frame_rate", fps)
    if kind == "botsort":
        # BoT-SORT here is its motion part only: no ReID model (none ships offline), and no camera
        # motion compensation, which needs the frames and a static warehouse camera does not move
        kwargs.setdefault("enable_cmc", False)
    return cls(**kwargs)


def track(kind: str, det_rows: np.ndarray, n_frames: int, fps: float = 15.0, class_id: int = 1,
          min_confidence: float = 0.0, **kwargs) -> np.ndarray:
    """Run tracker ``kind`` over the detections of one class (MOT rows, ``class_id`` 1-based) frame
    by frame; returns MOT rows ``frame,id,x,y,w,h,conf,class,-1`` of the boxes it assigned an id."""
    import supervision as sv

    tracker = make_tracker(kind, fps, **kwargs)
    dets = det_rows[(det_rows[:, 7] == class_id) & (det_rows[:, 6] >= min_confidence)]
    out = []
    for f in range(1, n_frames + 1):
        d = dets[dets[:, 0] == f]
        xyxy = np.c_[d[:, 2], d[:, 3], d[:, 2] + d[:, 4], d[:, 3] + d[:, 5]].reshape(-1, 4)
        result = tracker.update(sv.Detections(xyxy=xyxy.astype(np.float32), confidence=d[:, 6].astype(np.float32),
                                              class_id=np.full(len(d), class_id - 1, int)))
        for box, tid, conf in zip(result.xyxy, result.tracker_id, result.confidence):
            if tid >= 0:
                x1, y1, x2, y2 = (float(v) for v in box)
                out.append((f, int(tid), x1, y1, x2 - x1, y2 - y1, float(conf), class_id, -1))
    return np.array(out, float).reshape(-1, 9)
