"""Track-level events from a tracker's output, scored against the generator's timeline: a first
slice (zone entry and exit) for the events notebook of chapter 5 (``notebooks/video/``).

A track's *foot point* is the bottom centre of its box. :func:`zone_events` turns each track's
in-zone state into ``enter_zone`` / ``exit_zone`` events, with a debounce: a change counts only
after ``min_frames`` frames in the new state (a box that flickers across the lane's edge is one
event, not five), and the event is dated to the first of those frames.

:func:`match_events` scores predicted events against true ones. "Who" matters: a predicted track id
stands for the ground-truth id that the identity metrics (:func:`.metrics.identity`) paired it
with, and an event matches a true one of the same kind and worker within ``tolerance_s``. Each true
event is matched at most once (closest in time first). Precision, recall and the timing error of
the matches follow.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..vocabulary import EventKind
from .metrics import Rows


def zone_events(tracks: Rows, zone, fps: float, min_frames: int = 3) -> list[dict]:
    """``enter_zone`` / ``exit_zone`` events per track id of ``tracks`` ({frame: [(id, x1, y1, x2, y2)]},
    frames 1-based as in MOT files; events carry 0-based ``frame`` like the generator's)."""
    poly = np.asarray(zone, np.float32)
    states: dict[int, list[tuple[int, bool]]] = {}
    for f in sorted(tracks):
        for tid, x1, y1, x2, y2 in tracks[f]:
            inside = cv2.pointPolygonTest(poly, ((x1 + x2) / 2, y2), False) >= 0
            states.setdefault(tid, []).append((f - 1, inside))
    events = []
    for tid, seq in states.items():
        current, run_start, run_state, run_len = seq[0][1], None, None, 0
        for f, inside in seq[1:]:
            if inside == current:
                run_len, run_state = 0, None
                continue
            if run_state != inside:
                run_start, run_state, run_len = f, inside, 0
            run_len += 1
            if run_len >= min_frames:
                kind = EventKind.ENTER_ZONE if inside else EventKind.EXIT_ZONE
                events.append({"frame": run_start, "time_s": round(run_start / fps, 2), "track_id": tid, "type": kind})
                current, run_state, run_len = inside, None, 0
    return sorted(events, key=lambda e: (e["frame"], e["track_id"]))


def match_events(predicted: list[dict], truth: list[dict], pairs: dict[int, int], tolerance_s: float = 1.0,
                 kinds=(EventKind.ENTER_ZONE, EventKind.EXIT_ZONE)) -> dict:
    """Precision, recall and timing errors of ``predicted`` against ``truth`` (events of ``kinds``);
    ``pairs`` maps predicted track ids to ground-truth ids."""
    truth = [e for e in truth if e["type"] in kinds]
    predicted = [e for e in predicted if e["type"] in kinds]
    candidates = sorted(
        (abs(p["time_s"] - t["time_s"]), i, j)
        for i, p in enumerate(predicted) for j, t in enumerate(truth)
        if p["type"] == t["type"] and pairs.get(p["track_id"]) == t["track_id"]
        and abs(p["time_s"] - t["time_s"]) <= tolerance_s)
    used_p, used_t, errors = set(), set(), []
    for dt, i, j in candidates:
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        errors.append(predicted[i]["time_s"] - truth[j]["time_s"])
    err = np.abs(errors) if errors else np.zeros(1)
    return {"predicted": len(predicted), "true": len(truth), "matched": len(errors),
            "precision": len(errors) / len(predicted) if predicted else float("nan"),
            "recall": len(errors) / len(truth) if truth else float("nan"),
            "mean_abs_error_s": float(err.mean()), "max_abs_error_s": float(err.max()),
            "mean_error_s": float(np.mean(errors)) if errors else 0.0}
