"""Track-level events from a tracker's output, scored against the generator's timeline: a first
slice (zone entry and exit) for the events notebook of chapter 5 (``notebooks/video/``).

A track's *foot point* is the bottom centre of its box. :func:`zone_events` turns each track's
in-zone state into ``enter_zone`` / ``exit_zone`` events, with a debounce: a change counts only
after ``min_frames`` frames in the new state (a box that flickers across the lane's edge is one
event, not five), and the event is dated to the first of those frames.

:func:`match_events` scores predicted events against true ones. "Who" matters: a predicted track id
stands for the ground-truth id that the identity metrics (:func:`.metrics.identity`) paired it
with (strict: a fragment of a track names nobody) or, with :func:`who_at`, the worker its box
covers at the event's frame; an event matches a true one of the same kind and worker within ``tolerance_s``. Each true
event is matched at most once (closest in time first). Precision, recall and the timing error of
the matches follow.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..vocabulary import EventKind
from .metrics import Rows, iou_matrix


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


def who_at(gt: Rows, tracks: Rows, event: dict, min_iou: float = 0.5) -> int | None:
    """The ground-truth id whose box the event's track box overlaps most (IoU >= ``min_iou``) in the
    event's frame: "who" read locally, so a fragment of a worker's track still names that worker."""
    f = event["frame"] + 1
    box = next((r[1:] for r in tracks.get(f, []) if r[0] == event["track_id"]), None)
    rows = gt.get(f, [])
    if box is None or not rows:
        return None
    iou = iou_matrix([box], [r[1:] for r in rows])[0]
    return rows[int(iou.argmax())][0] if iou.max() >= min_iou else None


def match_events(predicted: list[dict], truth: list[dict], pairs: dict[int, int] | None = None,
                 tolerance_s: float = 1.0, kinds=(EventKind.ENTER_ZONE, EventKind.EXIT_ZONE)) -> dict:
    """Precision, recall and timing errors of ``predicted`` against ``truth`` (events of ``kinds``).
    ``pairs`` maps predicted track ids to ground-truth ids (the identity metrics' one-to-one
    pairing); None: each predicted event's own ``gt_id`` (from :func:`who_at`)."""
    truth = [e for e in truth if e["type"] in kinds]
    predicted = [e for e in predicted if e["type"] in kinds]
    candidates = sorted(
        (abs(p["time_s"] - t["time_s"]), i, j)
        for i, p in enumerate(predicted) for j, t in enumerate(truth)
        if p["type"] == t["type"] and (pairs.get(p["track_id"]) if pairs is not None else p.get("gt_id")) == t["track_id"]
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


VEST_CLASS = 3  # 1-based class of "vest" in the detection files (the detector's class order)


def vest_seen(tracks: Rows, det_rows: np.ndarray, min_confidence: float = 0.25) -> dict[tuple[int, int], bool]:
    """{(frame, track id): a vest detection's centre lies in the upper two thirds of the track's box}."""
    vests = det_rows[(det_rows[:, 7] == VEST_CLASS) & (det_rows[:, 6] >= min_confidence)]
    cx, cy = vests[:, 2] + vests[:, 4] / 2, vests[:, 3] + vests[:, 5] / 2
    out = {}
    for f, rows in tracks.items():
        here = vests[:, 0] == f
        for tid, x1, y1, x2, y2 in rows:
            inside = here & (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y1 + (y2 - y1) * 2 / 3)
            out[f, tid] = bool(inside.any())
    return out


def entries_without_vest(tracks: Rows, det_rows: np.ndarray, zone, fps: float, window_s: float = 1.0,
                         min_frames: int = 3) -> list[dict]:
    """The running question of the book, from pixels: each ``enter_zone`` of a track whose vest was
    seen in fewer than half of its frames within ``window_s`` either side of the entry (a vote over
    frames, not one frame). Adds ``vest_share`` to the event."""
    seen = vest_seen(tracks, det_rows)
    out = []
    for e in zone_events(tracks, zone, fps, min_frames):
        if e["type"] != EventKind.ENTER_ZONE:
            continue
        f0, half = e["frame"] + 1, round(window_s * fps)
        votes = [seen[f, e["track_id"]] for f in range(f0 - half, f0 + half + 1) if (f, e["track_id"]) in seen]
        share = float(np.mean(votes)) if votes else 0.0
        if share < 0.5:
            out.append({**e, "vest_share": round(share, 3)})
    return out
